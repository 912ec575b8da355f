"""OCRBench (Liu et al., 2024): 1,000 OCR questions over five task groups; the score is out of 1000.

Layout (``Yuliang-Liu/MultimodalOCR`` release)::

    OCRBench/
      OCRBench.json           list of {"dataset_name", "id", "image_path", "question", "answers", "type"}
      OCRBench_Images/<image_path>

Checked against the published ``OCRBench/OCRBench/OCRBench.json`` (1,000 records; ``answers`` is a string
or a list). Its ``id`` repeats across source datasets, so samples are numbered by their position in the
file, as the official scripts do. Matching is the official ``example.py`` rule (:func:`ocrbench_match`):
an answer contained in the response, case-insensitive; for HME100k with spaces removed and case kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    counts,
    image_item,
    image_media,
    percent,
    text_item,
    user_turn,
)
from ..io import read_json, require_file
from ..metrics import ocrbench_match

PUBLISHED_QUESTIONS = 1000
REQUIRED_KEYS = ("dataset_name", "image_path", "question", "answers", "type")
TEXT_RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)


class OCRBench(Benchmark):
    """OCRBench: the number of correct answers (primary, out of 1000 on the full set), per type and group."""

    modality = "image"
    folder = "OCRBench"
    primary_metric = "score"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotation = require_file(root, "OCRBench.json", "OCRBench/OCRBench.json")
        records = read_json(annotation)
        if not isinstance(records, list):
            raise DatasetError(f"{annotation}: expected a list of questions, got {type(records).__name__}")
        samples = []
        for index, record in enumerate(records):
            missing = [key for key in REQUIRED_KEYS if key not in record]
            if missing:
                self.report("malformed_record", f"{annotation}: record {index} lacks {', '.join(missing)}; skipped")
                continue
            answers = record["answers"]
            image = root / "OCRBench_Images" / record["image_path"]
            # The sample id is the position in OCRBench.json, as in the official scripts: the file's "id"
            # is only unique within one source dataset (IIIT5K and STVQA share ids, 113 collide).
            sample_id = str(index)
            self.check_media(image, f"{annotation.name} record {index}")
            samples.append(
                Sample(
                    id=sample_id,
                    question=record["question"],
                    answer=[answers] if isinstance(answers, str) else [str(a) for a in answers],
                    category=record["type"],
                    media=[image_media(str(image))],
                    meta={"dataset_name": record["dataset_name"], "source_id": record.get("id")},
                )
            )
        self.check_count(len(samples), PUBLISHED_QUESTIONS, str(annotation))
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            image_item(sample.media[0]["image"]),
            text_item(prompts.short_answer(sample.question, prompts.SHORT_ANSWER_WITH)),
        )

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        by_dataset: dict[str, int] = {}
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else prediction.response
            prediction.correct = prediction.extracted is not None and ocrbench_match(
                prediction.extracted, sample.answer, sample.meta["dataset_name"]
            )
            prediction.score = float(prediction.correct)
            by_type[sample.category] = by_type.get(sample.category, 0) + int(prediction.correct)
            dataset = sample.meta["dataset_name"]
            by_dataset[dataset] = by_dataset.get(dataset, 0) + int(prediction.correct)
        correct = sum(by_type.values())
        return {
            "score": correct,
            "accuracy": percent(correct, len(predictions)),
            "text_recognition": sum(v for k, v in by_type.items() if k in TEXT_RECOGNITION),
            "by_type": dict(sorted(by_type.items())),
            # Correct answers per source dataset (the official script prints these for partial runs).
            "by_dataset": dict(sorted(by_dataset.items())),
            **counts(predictions),
        }
