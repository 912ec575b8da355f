"""MME (Fu et al., 2023): yes/no questions, two per image, 10 perception and 4 cognition subtasks.

Layout (``MME_Benchmark_release_version``)::

    MME_Benchmark_release_version/
      existence/  count/  position/  color/  OCR/  commonsense_reasoning/  numerical_calculation/
      text_translation/  code_reasoning/          <image>.jpg|png + <image>.txt side by side
      artwork/  celebrity/  landmark/  posters/  scene/
                                                  images/<image>.jpg + questions_answers_YN/<image>.txt

Each ``.txt`` holds one question per line, ``<question>\\t<Yes|No>``. Per subtask the score is
acc + acc+ (both questions of an image right), out of 200; perception sums to 2000, cognition to 800.
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
    text_item,
    user_turn,
)
from ..extraction import extract_yes_no
from ..metrics import MME_COGNITION, MME_PERCEPTION, mme_scores

IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG")


class MME(Benchmark):
    """MME: perception and cognition scores (sums of acc + acc+), and each subtask's."""

    modality = "image"
    folder = "MME_Benchmark_release_version"
    primary_metric = "perception"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        if (root / "MME_Benchmark_release_version").is_dir():
            root = root / "MME_Benchmark_release_version"
        samples = []
        for task in MME_PERCEPTION + MME_COGNITION:
            folder = root / task
            if not folder.is_dir():
                continue
            if (folder / "questions_answers_YN").is_dir():
                text_dir, image_dir = folder / "questions_answers_YN", folder / "images"
            else:
                text_dir = image_dir = folder
            for text_file in sorted(text_dir.glob("*.txt")):
                image = next(
                    (
                        image_dir / f"{text_file.stem}{e}"
                        for e in IMAGE_EXTENSIONS
                        if (image_dir / f"{text_file.stem}{e}").exists()
                    ),
                    None,
                )
                if image is None:
                    raise DatasetError(f"{text_file}: no image {text_file.stem}.jpg/.png in {image_dir}")
                lines = [line for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
                for number, line in enumerate(lines):
                    question, sep, answer = line.rpartition("\t")
                    if not sep:
                        raise DatasetError(f"{text_file}:{number + 1}: expected '<question>\\t<Yes|No>'")
                    samples.append(
                        Sample(
                            id=f"{task}/{image.name}/{number}",
                            question=question.strip(),
                            answer=answer.strip().lower(),
                            category=task,
                            media=[image_media(str(image))],
                            meta={"image": image.name},
                        )
                    )
        if not samples:
            raise DatasetError(f"{root}: no MME subtask folder (existence/, count/, artwork/...)")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(image_item(sample.media[0]["image"]), text_item(prompts.short_answer(sample.question)))

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            prediction.extracted = None if prediction.failed else extract_yes_no(prediction.response)
            prediction.correct = prediction.extracted == prediction.sample.answer
            prediction.score = float(prediction.correct)
        scores = mme_scores((p.sample.category, p.sample.meta["image"], p.correct) for p in predictions)
        return {**scores, **counts(predictions)}
