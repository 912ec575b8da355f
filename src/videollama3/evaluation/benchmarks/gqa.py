"""GQA (Hudson & Manning, 2019), balanced test-dev split: compositional questions on real images.

Layout (the Stanford GQA release)::

    GQA/
      testdev_balanced_questions.json    {question id: {"imageId", "question", "answer", "fullAnswer",
                                         "types": {"structural", "semantic", "detailed"}, ...}}
      images/<imageId>.jpg
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import Benchmark, EvalSettings, Prediction, Sample, image_item, image_media, summarize, text_item, user_turn
from ..extraction import clean_response
from ..io import read_json, require_file
from ..metrics import vqa_exact_match

PUBLISHED_QUESTIONS = 12578  # test-dev, balanced


class GQA(Benchmark):
    """GQA test-dev balanced: exact-match accuracy, overall and per structural / semantic type."""

    modality = "image"
    folder = "GQA"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotation = require_file(root, "testdev_balanced_questions.json", "questions/testdev_balanced_questions.json")
        questions = read_json(annotation)
        samples = []
        for qid, record in questions.items():
            missing = [key for key in ("imageId", "question", "answer") if key not in record]
            if missing:
                self.report("malformed_record", f"{annotation}: question {qid} lacks {', '.join(missing)}; skipped")
                continue
            types = record.get("types") or {}
            image = root / "images" / f"{record['imageId']}.jpg"
            self.check_media(image, str(qid))
            samples.append(
                Sample(
                    id=str(qid),
                    question=record["question"],
                    answer=record["answer"],
                    category=types.get("structural"),
                    media=[image_media(str(image))],
                    meta={"semantic": types.get("semantic")},
                )
            )
        self.check_count(len(samples), PUBLISHED_QUESTIONS, str(annotation))
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(image_item(sample.media[0]["image"]), text_item(prompts.short_answer(sample.question)))

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            prediction.extracted = None if prediction.failed else clean_response(prediction.response)
            prediction.correct = prediction.extracted is not None and vqa_exact_match(
                prediction.extracted, prediction.sample.answer
            )
            prediction.score = float(prediction.correct)
        return summarize(
            predictions,
            groups={"by_structural": lambda p: p.sample.category, "by_semantic": lambda p: p.sample.meta["semantic"]},
        )
