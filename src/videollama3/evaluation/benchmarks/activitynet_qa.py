"""ActivityNet-QA (Yu et al., 2019): open-ended video QA judged by an LLM (needs ``--judge-endpoint``).

Layout (``MILVLG/activitynet-qa`` release)::

    ActivityNet-QA/
      test_q.json    list of {"video_name", "question_id", "question"}
      test_a.json    list of {"question_id", "answer", "type" (0-8)}
      all_test/v_<video_name>.mp4      (or videos/; .mp4 .mkv .webm ...)

The judge sees the question, the answer and the prediction and returns ``{'pred': 'yes'|'no',
'score': 0-5}`` (the Video-ChatGPT protocol the official code uses): accuracy = share of "yes",
score = mean score. A question without an answer in ``test_a.json`` cannot be judged: it is reported and
left out; missing videos are reported (those samples fail).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from .. import prompts
from ..base import Benchmark, EvalSettings, Prediction, Sample, counts, percent, text_item, user_turn, video_item
from ..io import find_video, first_existing, read_json
from ..judge import JudgeError

TYPES = {
    0: "Motion",
    1: "Spatial Relation",
    2: "Temporal Relation",
    3: "Yes/No",
    4: "Color",
    5: "Object",
    6: "Location",
    7: "Number",
    8: "Other",
}

JUDGE_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. Your task is to compare the predicted answer with the correct answer and determine if "
    "they match meaningfully. Here's how you can accomplish the task:------##INSTRUCTIONS: - Focus on the "
    "meaningful match between the predicted answer and the correct answer.\n- Consider synonyms or paraphrases as "
    "valid matches.\n- Evaluate the correctness of the prediction compared to the answer."
)
JUDGE_USER = (
    "Please evaluate the following video-based question-answer pair:\n\nQuestion: {question}\nCorrect Answer: "
    "{answer}\nPredicted Answer: {pred}\n\nProvide your evaluation only as a yes/no and score where the score is an "
    "integer value between 0 and 5, with 5 indicating the highest meaningful match. Please generate the response in "
    "the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of "
    "'yes' or 'no' and value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR "
    "EXPLANATION. Only provide the Python dictionary string. For example, your response should look like this: "
    "{{'pred': 'yes', 'score': 4.8}}."
)


def parse_judgement(text: str) -> tuple[bool, float]:
    """(match, score) from the judge's ``{'pred': ..., 'score': ...}`` reply."""
    found = re.search(r"\{.*\}", text, re.S)
    if not found:
        raise JudgeError(f"judge reply without a dict: {text!r}")
    try:
        value = ast.literal_eval(found.group(0))
        return str(value["pred"]).strip().lower() == "yes", float(value["score"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise JudgeError(f"unreadable judge reply {text!r}") from exc


PUBLISHED_TEST_QUESTIONS = 8000
FREE_TYPES = [TYPES[t] for t in range(3, 9)]


class ActivityNetQA(Benchmark):
    """ActivityNet-QA test: judge accuracy (% yes) and mean judge score (0-5)."""

    modality = "video"
    folder = "ActivityNet-QA"
    requires_judge = True

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        answers = {str(a["question_id"]): a for a in read_json(root / "test_a.json")}
        video_dir = first_existing(root / "all_test", root / "videos") or root / "all_test"
        samples = []
        for index, record in enumerate(read_json(root / "test_q.json")):
            if not all(key in record for key in ("question_id", "question", "video_name")):
                self.report(
                    "malformed_record", f"test_q.json[{index}]: no question_id / question / video_name; skipped"
                )
                continue
            qid = str(record["question_id"])
            answer = answers.get(qid)
            if answer is None or "answer" not in answer:
                self.report("missing_answer", f"{qid}: no answer in test_a.json; skipped (it cannot be judged)")
                continue
            video = find_video(video_dir, f"v_{record['video_name']}")
            self.check_media(video, qid)
            samples.append(
                Sample(
                    id=qid,
                    question=record["question"],
                    answer=answer["answer"],
                    category=TYPES.get(answer.get("type"), str(answer.get("type"))),
                    media=[{"type": "video", "path": str(video)}],
                )
            )
        self.check_count(len(samples), PUBLISHED_TEST_QUESTIONS, "test_q.json / test_a.json")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings), text_item(prompts.activitynet_qa(sample.question))
        )

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        judge_failures = 0
        for prediction in predictions:
            prediction.score = 0.0
            prediction.correct = False
            if prediction.failed:
                continue
            sample = prediction.sample
            message = JUDGE_USER.format(question=sample.question, answer=sample.answer, pred=prediction.response)
            try:
                reply = self.judge.chat(
                    [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": message}]
                )
                match, score = parse_judgement(reply)
            except JudgeError as exc:
                judge_failures += 1
                prediction.info["judge_error"] = str(exc)
                continue
            prediction.extracted = prediction.response
            prediction.correct = match
            prediction.score = score
        n = len(predictions)
        by_type: dict[str, list[bool]] = {}
        for p in predictions:
            by_type.setdefault(p.sample.category or "?", []).append(bool(p.correct))
        return {
            "accuracy": percent(sum(bool(p.correct) for p in predictions), n),
            "score": sum(p.score or 0.0 for p in predictions) / n if n else 0.0,
            "by_type": {k: percent(sum(v), len(v)) for k, v in sorted(by_type.items())},
            # evaluation/eval.py of the release also reports the "Free" questions (types 3-8) together.
            "free": percent(
                sum(sum(by_type.get(t, [])) for t in FREE_TYPES), sum(len(by_type.get(t, [])) for t in FREE_TYPES)
            ),
            "judge_failures": judge_failures,
            **counts(predictions),
        }
