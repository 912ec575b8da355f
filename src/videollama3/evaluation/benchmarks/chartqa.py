"""ChartQA (Masry et al., 2022): relaxed accuracy (numbers within 5%) on the human and augmented test sets.

Layout (``vis-nlp/ChartQA`` release, folder ``ChartQA Dataset``)::

    ChartQA Dataset/
      test/test_human.json        list of {"imgname", "query", "label"}
      test/test_augmented.json
      test/png/<imgname>

The reported ChartQA number is the accuracy over both sets (equal sizes: the mean of the two).
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
    image_item,
    image_media,
    summarize,
    text_item,
    user_turn,
)
from ..io import read_json
from ..metrics import relaxed_correctness

SPLITS = ("human", "augmented")
PUBLISHED_QUESTIONS = 1250  # per test set


class ChartQA(Benchmark):
    """ChartQA test: relaxed accuracy overall and per set (human / augmented)."""

    modality = "image"
    folder = "ChartQA"
    primary_metric = "relaxed_accuracy"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        if not (root / "test").is_dir() and (root / "ChartQA Dataset" / "test").is_dir():
            root = root / "ChartQA Dataset"
        samples = []
        for split in SPLITS:
            annotation = root / "test" / f"test_{split}.json"
            if not annotation.exists():
                self.report("missing_file", f"{annotation} does not exist: the {split} set is not evaluated")
                continue
            records = read_json(annotation)
            loaded = len(samples)
            for index, record in enumerate(records):
                if not isinstance(record, dict) or any(key not in record for key in ("imgname", "query", "label")):
                    self.report("malformed_record", f"{annotation}: record {index} lacks imgname/query/label; skipped")
                    continue
                image = root / "test" / "png" / record["imgname"]
                self.check_media(image, f"{split}/{index}")
                samples.append(
                    Sample(
                        id=f"{split}/{index}",
                        question=record["query"],
                        answer=str(record["label"]),
                        category=split,
                        media=[image_media(str(image))],
                    )
                )
            self.check_count(len(samples) - loaded, PUBLISHED_QUESTIONS, str(annotation))
        if not samples:
            raise DatasetError(f"{root}: expected test/test_human.json and/or test/test_augmented.json")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(image_item(sample.media[0]["image"]), text_item(prompts.short_answer(sample.question)))

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            # The official scoring compares the stripped response as it is (no further parsing).
            prediction.extracted = None if prediction.failed else prediction.response.strip()
            prediction.correct = prediction.extracted is not None and relaxed_correctness(
                prediction.sample.answer, prediction.extracted
            )
            prediction.score = float(prediction.correct)
        return summarize(predictions, self.primary_metric, {"by_split": lambda p: p.sample.category})
