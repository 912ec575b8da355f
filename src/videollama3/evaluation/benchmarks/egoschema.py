"""EgoSchema (Mangalam et al., 2023): very long-form egocentric video questions, five options.

Layout (``egoschema/EgoSchema`` GitHub release; ``lmms-lab/egoschema`` holds the same files)::

    EgoSchema/
      questions.json          list of {"q_uid", "google_drive_id", "question", "option 0" ... "option 4"}
      subset_answers.json     {q_uid: answer index} for the public 500-question subset
      good_clips_git/<q_uid>.mp4     (or videos/)

Only the subset's answers are public: ``egoschema`` scores those 500 questions locally;
``egoschema_full`` answers all 5,031 and writes the Kaggle submission file (``q_uid,answer``), scoring the
subset part of it. Records without a question or an option, answers outside 0-4 and subset answers whose
question is missing are reported as data problems (early versions of ``questions.json`` had no
``question`` field).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    letters_for,
    summarize,
    text_item,
    user_turn,
    video_item,
    video_media,
)
from ..extraction import extract_choice
from ..io import find_video, first_existing, read_json
from .common import MultipleChoiceBenchmark

LETTERS = "ABCDE"
PUBLISHED_QUESTIONS = 5031
OPTION_KEYS = tuple(f"option {i}" for i in range(5))


class EgoSchema(MultipleChoiceBenchmark):
    """EgoSchema: accuracy on the public subset (``subset=False``: every question, plus a submission file)."""

    modality = "video"
    folder = "EgoSchema"

    def __init__(self, name: str | None = None, subset: bool = True, **options: Any) -> None:
        super().__init__(name, **options)
        self.subset = subset

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        questions = read_json(root / "questions.json")
        answers_file = root / "subset_answers.json"
        answers = self._answers(read_json(answers_file)) if answers_file.exists() else {}
        if self.subset and not answers:
            raise DatasetError(f"{root}: subset_answers.json is needed to score the EgoSchema subset")
        if not questions:
            self.report("empty_file", "questions.json holds no questions")
        video_dir = first_existing(root / "good_clips_git", root / "videos") or root / "good_clips_git"
        samples = []
        for index, record in enumerate(questions):
            missing = [key for key in ("q_uid", "question", *OPTION_KEYS) if key not in record]
            if missing:
                self.report("malformed_record", f"questions.json[{index}]: no {', '.join(missing)}; skipped")
                continue
            uid = str(record["q_uid"])
            if self.subset and uid not in answers:
                continue
            answer = answers.get(uid)
            video = find_video(video_dir, uid)
            self.check_media(video, uid)
            samples.append(
                Sample(
                    id=uid,
                    question=record["question"],
                    answer=LETTERS[answer] if answer is not None else None,
                    options=[str(record[key]) for key in OPTION_KEYS],
                    media=[video_media(video)],
                )
            )
        if self.subset:
            self.check_count(len(samples), len(answers), "questions.json (the questions of subset_answers.json)")
        else:
            self.check_count(len(samples), PUBLISHED_QUESTIONS, "questions.json")
        return samples

    def _answers(self, raw: dict[str, Any]) -> dict[str, int]:
        """``{q_uid: index}`` of the public answers; answers that are not an index 0-4 are reported."""
        answers = {}
        for uid, value in raw.items():
            try:
                index = int(value)
            except (TypeError, ValueError):
                index = -1
            if not 0 <= index < len(LETTERS):
                self.report("malformed_record", f"subset_answers.json[{uid!r}]: answer {value!r} is not 0-4; skipped")
                continue
            answers[str(uid)] = index
        return answers

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.egoschema(sample.question, sample.options, LETTERS)),
        )

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else extract_choice(prediction.response, sample.options)
            prediction.correct = sample.answer is not None and prediction.extracted == sample.answer
            prediction.score = float(prediction.correct)
        scored = [p for p in predictions if p.sample.answer is not None]
        result = summarize(scored)
        if not self.subset:
            result["answered"] = sum(p.extracted is not None for p in predictions)
            result["total_questions"] = len(predictions)
        return result

    def write_submission(self, predictions: list[Prediction], folder: Path) -> Path | None:
        if self.subset:
            return None
        path = folder / "egoschema_submission.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["q_uid", "answer"])
            for p in predictions:
                # Kaggle needs an answer per question: unreadable answers are written as -1 (counted as wrong).
                index = letters_for(p.sample.options).find(p.extracted) if p.extracted else -1
                writer.writerow([p.sample.id, index])
        return path
