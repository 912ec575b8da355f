"""DocVQA (Mathew et al., 2021) and InfographicVQA (Mathew et al., 2022), scored by ANLS (threshold 0.5).

Layouts (the Robust Reading Competition downloads)::

    DocVQA/
      val/val_v1.0_withQT.json      {"dataset_name", "dataset_split", "data": [{"questionId", "question",
                                    "question_types", "image": "documents/xxx.png", "docId",
                                    "answers": [...]}, ...]}  (val_v1.0.json: the same without types)
      val/documents/*.png
      test/test_v1.0.json           the same without answers
      test/documents/*.png

    InfoVQA/
      infographicsVQA_val_v1.0_withQT.json     {"data": [{"questionId", "question", "image_local_name",
                                               "answers", "answer_type", "question_type", ...}]}
      infographicsVQA_test_v1.0.json
      infographicsvqa_images/*.jpeg            (or images/)

Test splits have no public answers: ``docvqa_test`` / ``infovqa_test`` write the evaluation server's
submission file (``[{"questionId", "answer"}]``) instead of a score.
"""

from __future__ import annotations

import json
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
from ..io import first_existing, read_json
from ..metrics import anls


class DocVQA(Benchmark):
    """DocVQA: ANLS in percent (val), or a submission file (test)."""

    modality = "image"
    folder = "DocVQA"
    primary_metric = "anls"
    prompt_suffix = prompts.SHORT_ANSWER_WITH
    published_questions = {"val": 5349, "test": 5188}

    def __init__(self, name: str | None = None, split: str = "val", **options: Any) -> None:
        super().__init__(name, **options)
        if split not in ("val", "test"):
            raise DatasetError(f"split must be val or test, got {split!r}")
        self.split = split

    def annotation_file(self, root: Path) -> Path:
        names = (
            ["val/val_v1.0_withQT.json", "val/val_v1.0.json", "val_v1.0_withQT.json", "val_v1.0.json"]
            if self.split == "val"
            else ["test/test_v1.0.json", "test_v1.0.json"]
        )
        found = first_existing(*(root / n for n in names))
        if found is None:
            raise DatasetError(f"{root}: expected one of {', '.join(names)}")
        return found

    def image_path(self, annotation: Path, root: Path, record: dict[str, Any]) -> Path:
        return annotation.parent / record["image"]

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotation = self.annotation_file(root)
        data = read_json(annotation)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise DatasetError(f"{annotation}: expected {{'data': [questions]}}")
        samples = []
        for index, record in enumerate(data["data"]):
            if not isinstance(record, dict) or "questionId" not in record or "question" not in record:
                self.report("malformed_record", f"{annotation}: record {index} lacks questionId/question; skipped")
                continue
            answers = record.get("answers")
            if self.split == "val" and not answers:
                # Unscorable: ANLS needs at least one answer.
                self.report(
                    "malformed_record", f"{annotation}: question {record['questionId']} has no answers; skipped"
                )
                continue
            try:
                image = self.image_path(annotation, root, record)
            except KeyError as exc:
                self.report("malformed_record", f"{annotation}: question {record['questionId']} lacks {exc}; skipped")
                continue
            self.check_media(image, str(record["questionId"]))
            samples.append(
                Sample(
                    id=str(record["questionId"]),
                    question=record["question"],
                    answer=answers,
                    media=[image_media(str(image))],
                    meta={"question_types": record.get("question_types") or record.get("question_type")},
                )
            )
        self.check_count(len(samples), self.published_questions[self.split], str(annotation))
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            image_item(sample.media[0]["image"]), text_item(prompts.short_answer(sample.question, self.prompt_suffix))
        )

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            prediction.extracted = None if prediction.failed else prediction.response.strip()
            prediction.score = 0.0
            if prediction.extracted is not None and prediction.sample.answer:
                prediction.score = anls(prediction.extracted, prediction.sample.answer)
            prediction.correct = prediction.score >= 0.5
        if self.split == "test":
            return {
                "anls": None,
                "submission_only": True,
                "n": len(predictions),
                "failed": sum(p.failed for p in predictions),
            }
        return summarize(predictions, self.primary_metric, {"by_question_type": _question_types})

    def write_submission(self, predictions: list[Prediction], folder: Path) -> Path | None:
        if self.split != "test":
            return None
        path = folder / f"{self.name}_submission.json"
        rows = [{"questionId": _int_or_str(p.sample.id), "answer": p.extracted or ""} for p in predictions]
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
        return path


def _question_types(prediction: Prediction):
    types = prediction.sample.meta.get("question_types")
    if not types:
        return None
    return [str(t) for t in types] if isinstance(types, (list, tuple)) else str(types)


def _int_or_str(value: str):
    return int(value) if value.isdigit() else value


class InfoVQA(DocVQA):
    """InfographicVQA: ANLS in percent (val), or a submission file (test)."""

    folder = "InfoVQA"
    prompt_suffix = prompts.SHORT_ANSWER_USING
    published_questions = {"val": 2801, "test": 3288}

    def annotation_file(self, root: Path) -> Path:
        names = (
            [
                "infographicsVQA_val_v1.0_withQT.json",
                "infographicVQA_val_v1.0_withQT.json",
                "infographicsVQA_val_v1.0.json",
                "infographicVQA_val_v1.0.json",
            ]
            if self.split == "val"
            else ["infographicsVQA_test_v1.0.json", "infographicVQA_test_v1.0.json"]
        )
        found = first_existing(*(root / n for n in names))
        if found is None:
            raise DatasetError(f"{root}: expected one of {', '.join(names)}")
        return found

    def image_path(self, annotation: Path, root: Path, record: dict[str, Any]) -> Path:
        folder = first_existing(root / "infographicsvqa_images", root / "images") or root / "infographicsvqa_images"
        return folder / record["image_local_name"]
