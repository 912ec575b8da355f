"""OCRBench (Liu et al., 2024): 1,000 OCR questions over five task groups; the score is out of 1000.

Layout (``Yuliang-Liu/MultimodalOCR`` release)::

    OCRBench/
      OCRBench.json           list of {"dataset_name", "id", "image_path", "question", "answers", "type"}
      OCRBench_Images/<image_path>
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    Benchmark,
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
        samples = []
        for index, record in enumerate(read_json(require_file(root, "OCRBench.json", "OCRBench/OCRBench.json"))):
            answers = record["answers"]
            samples.append(
                Sample(
                    id=str(record.get("id", index)),
                    question=record["question"],
                    answer=[answers] if isinstance(answers, str) else list(answers),
                    category=record["type"],
                    media=[image_media(str(root / "OCRBench_Images" / record["image_path"]))],
                    meta={"dataset_name": record.get("dataset_name", "")},
                )
            )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            image_item(sample.media[0]["image"]),
            text_item(prompts.short_answer(sample.question, prompts.SHORT_ANSWER_WITH)),
        )

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else prediction.response
            prediction.correct = prediction.extracted is not None and ocrbench_match(
                prediction.extracted, sample.answer, sample.meta["dataset_name"]
            )
            prediction.score = float(prediction.correct)
            by_type[sample.category] = by_type.get(sample.category, 0) + int(prediction.correct)
        correct = sum(by_type.values())
        return {
            "score": correct,
            "accuracy": percent(correct, len(predictions)),
            "text_recognition": sum(v for k, v in by_type.items() if k in TEXT_RECOGNITION),
            "by_type": dict(sorted(by_type.items())),
            **counts(predictions),
        }
