"""TempCompass (Liu et al., 2024): temporal perception in three answer formats scored by rules.

Layouts (either)::

    TempCompass/                                  lmms-lab/TempCompass (what the official code reads)
      multi-choice/test-00000-of-00001.parquet    columns: video_id, question, answer, dim
      yes_no/test-00000-of-00001.parquet
      caption_matching/test-00000-of-00001.parquet
      videos/<video_id>.mp4

    TempCompass/                                  llyx97/TempCompass GitHub release
      questions/multi-choice.json                 {video_id: {dim: [{"question", "answer"}, ...]}}
      questions/yes_no.json  questions/caption_matching.json
      videos/<video_id>.mp4

Multi-choice questions list their options as ``A. ...`` lines, answers read ``A. ...``; caption matching
options read ``Caption A: ...`` (or ``Sentence A``, ``Option 1``) and so do the answers; yes/no answers
are ``yes`` / ``no``. The fourth format (captioning) needs an LLM judge and is not scored here.
A missing format file, a question whose options or answer cannot be read and a missing video are
reported as data problems; the rest is evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import prompts
from ..base import Benchmark, DatasetError, EvalSettings, Prediction, Sample, summarize, text_item, user_turn
from ..base import video_item as make_video_item
from ..extraction import extract_choice, extract_yes_no
from ..io import read_json, read_parquet
from .common import by_meta

FORMATS = ("multi-choice", "yes_no", "caption_matching")
_MC_OPTION = re.compile(r"^\s*([A-Z])\.\s*(.*)$")
_CAPTION_OPTION = re.compile(r"^\s*(Sentence|Caption|Option)\s*([A-Z0-9]+)\s*:\s*(.*)$", re.I)
_CAPTION_LABEL = re.compile(r"\b(?:sentence|caption|option)\s*([A-Z0-9])\b", re.I)
# Questions per format of the release (llyx97/TempCompass questions/*.json).
PUBLISHED_COUNTS = {"multi-choice": 1580, "yes_no": 2453, "caption_matching": 1503}


def _records(root: Path, task_format: str) -> list[dict[str, Any]]:
    parquet = root / task_format / "test-00000-of-00001.parquet"
    if parquet.exists():
        return read_parquet(parquet)
    parquets = sorted((root / task_format).glob("*.parquet"))
    if parquets:
        return [row for path in parquets for row in read_parquet(path)]
    json_file = root / "questions" / f"{task_format}.json"
    if not json_file.exists():
        return []
    rows = []
    for video_id, dims in read_json(json_file).items():
        for dim, questions in dims.items():
            for question in questions:
                rows.append({"video_id": video_id, "dim": dim, **question})
    return rows


class TempCompass(Benchmark):
    """TempCompass: accuracy over all questions, per format and per temporal dimension."""

    modality = "video"
    folder = "TempCompass"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        samples = []
        for task_format in FORMATS:
            counters: dict[tuple[str, str], int] = {}
            rows = _records(root, task_format)
            if not rows:
                self.report("missing_file", f"no {task_format} questions ({task_format}/*.parquet or questions/)")
                continue
            loaded = 0
            for row in rows:
                video_id, dim = str(row["video_id"]), str(row["dim"])
                number = counters.get((video_id, dim), 0)
                counters[(video_id, dim)] = number + 1
                sample = Sample(
                    id=f"{task_format}/{video_id}/{dim}/{number}",
                    question=str(row["question"]),
                    answer=str(row["answer"]).strip(),
                    category=dim,
                    media=[{"type": "video", "path": str(root / "videos" / f"{video_id}.mp4")}],
                    meta={"format": task_format},
                )
                if not self._parse_options(sample):
                    self.report(
                        "malformed_record", f"{sample.id}: cannot read the options / answer {sample.answer!r}; skipped"
                    )
                    continue
                self.check_media(sample.media[0]["path"], sample.id)
                samples.append(sample)
                loaded += 1
            self.check_count(loaded, PUBLISHED_COUNTS[task_format], f"{task_format} questions")
        if not samples:
            raise DatasetError(f"{root}: no TempCompass questions (multi-choice/*.parquet or questions/*.json)")
        return samples

    @staticmethod
    def _parse_options(sample: Sample) -> bool:
        """Options and the right label, read from the question lines and the answer; False if unreadable."""
        task_format = sample.meta["format"]
        if task_format == "yes_no":
            sample.answer = sample.answer.lower().strip(". ")
            return sample.answer in ("yes", "no")
        pattern = _MC_OPTION if task_format == "multi-choice" else _CAPTION_OPTION
        labels, texts = [], []
        for line in sample.question.split("\n"):
            match = pattern.match(line)
            if match:
                labels.append(match.group(1 if task_format == "multi-choice" else 2).upper())
                texts.append(match.group(match.lastindex).strip())
        answer = pattern.match(sample.answer)
        if not labels or not answer:
            return False
        sample.options = texts
        sample.meta["letters"] = "".join(labels)
        sample.answer = answer.group(1 if task_format == "multi-choice" else 2).upper()
        return sample.answer in labels

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            make_video_item(sample.media[0]["path"], settings),
            text_item(prompts.tempcompass(sample.question, sample.meta["format"])),
        )

    @staticmethod
    def extract(sample: Sample, response: str) -> str | None:
        task_format = sample.meta["format"]
        if task_format == "yes_no":
            return extract_yes_no(response)
        labels = sample.meta["letters"]
        if task_format == "caption_matching":
            label = _CAPTION_LABEL.search(response)
            if label and label.group(1).upper() in labels:
                return label.group(1).upper()
            if not labels.isalpha():  # numbered options: a lone digit
                digits = [d for d in re.findall(r"\b(\d)\b", response) if d in labels]
                return digits[0] if digits else None
        return extract_choice(response, sample.options, labels)

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else self.extract(sample, prediction.response)
            prediction.correct = prediction.extracted is not None and prediction.extracted == sample.answer
            prediction.score = float(prediction.correct)
        return summarize(predictions, groups={"by_format": by_meta("format"), "by_dim": lambda p: p.sample.category})
