"""A predictor that answers from a script, for metric checks: ``--predictor <this file>:ScriptedPredictor``.

``--model`` names a JSON file ``{sample id: response}``; a response ``{"raise": "message"}`` makes the
sample fail, ``{"interrupt": true}`` stops the run as Ctrl-C would, a missing id is answered with an
empty string; ``"__fail_on_rank__": r`` makes loading fail on rank r (a broken model on one process). Every conversation it receives is appended
to ``<script>.seen.jsonl`` (the text items and the media kinds), so tests can check the prompts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _describe(conversation: list[dict]) -> dict:
    texts, media = [], []
    for message in conversation:
        for item in message["content"]:
            if item["type"] == "text":
                texts.append(item["text"])
            else:
                value = item[item["type"]]
                if item["type"] == "video" and isinstance(value, dict) and "frames" in value:
                    media.append({"type": "frames", "timestamps": value["timestamps"]})
                elif isinstance(value, dict):
                    media.append({"type": item["type"], **{k: v for k, v in value.items()}})
                else:
                    media.append({"type": item["type"], "object": type(value).__name__})
    return {"texts": texts, "media": media}


class ScriptedPredictor:
    def __init__(self, model: str, settings, device=None, dtype=None):
        self.script = json.loads(Path(model).read_text())
        if self.script.get("__fail_on_rank__") == int(os.environ.get("RANK", 0)):
            raise RuntimeError("this rank cannot load the model")
        self.seen = Path(model).with_suffix(".seen.jsonl")
        self.settings = settings

    def generate(self, requests):
        out = []
        for request in requests:
            with open(self.seen, "a") as f:
                record = {"id": request.id, "rank": int(os.environ.get("RANK", 0)), **_describe(request.conversation)}
                f.write(json.dumps(record) + "\n")
            answer = self.script.get(request.id, "")
            if isinstance(answer, dict) and answer.get("interrupt"):
                raise KeyboardInterrupt
            if isinstance(answer, dict):
                raise RuntimeError(answer["raise"])
            out.append(answer)
        return out
