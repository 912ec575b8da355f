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
ANSWERS = {"yes": "yes", "no": "no"}
# Questions per subtask in the release (two per image): 2,374 in all (perception 2,114, cognition 260).
PUBLISHED_QUESTIONS = {
    "existence": 60,
    "count": 60,
    "position": 60,
    "color": 60,
    "posters": 294,
    "celebrity": 340,
    "scene": 400,
    "landmark": 400,
    "artwork": 400,
    "OCR": 40,
    "commonsense_reasoning": 140,
    "numerical_calculation": 40,
    "text_translation": 40,
    "code_reasoning": 40,
}
# The release's questions end with this; the official VideoLLaMA3 prompt moves it after its own instruction.
YES_NO_SUFFIX = " Please answer yes or no."


class MME(Benchmark):
    """MME: perception and cognition scores (sums of acc + acc+), and each subtask's."""

    modality = "image"
    folder = "MME_Benchmark_release_version"
    primary_metric = "perception"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        if (root / "MME_Benchmark_release_version").is_dir():
            root = root / "MME_Benchmark_release_version"
        samples: list[Sample] = []
        for task in MME_PERCEPTION + MME_COGNITION:
            folder = root / task
            if not folder.is_dir():
                self.report("missing_subtask", f"{folder}: no such folder ({PUBLISHED_QUESTIONS[task]} questions)")
                continue
            loaded = len(samples)
            samples += self._load_subtask(task, folder)
            self.check_count(len(samples) - loaded, PUBLISHED_QUESTIONS[task], f"{folder}")
        if all((root / task).is_dir() for task in PUBLISHED_QUESTIONS):
            self.check_count(len(samples), sum(PUBLISHED_QUESTIONS.values()), f"{root} (all subtasks)")
        if not samples:
            raise DatasetError(f"{root}: no MME questions (subtask folders existence/, count/, artwork/...)")
        return samples

    def _load_subtask(self, task: str, folder: Path) -> list[Sample]:
        if (folder / "questions_answers_YN").is_dir():
            text_dir, image_dir = folder / "questions_answers_YN", folder / "images"
        else:
            text_dir = image_dir = folder
        images = {p.stem: p for p in sorted(image_dir.glob("*")) if p.suffix in IMAGE_EXTENSIONS}
        text_files = sorted(text_dir.glob("*.txt"))
        for stem in sorted(set(images) - {t.stem for t in text_files}):
            self.report("missing_annotation", f"{images[stem]}: no question file {stem}.txt in {text_dir}")
        samples = []
        for text_file in text_files:
            lines = [line for line in text_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
            if not lines:
                self.report("empty_file", f"{text_file}: no questions (the release has two per image)")
                continue
            image = images.get(text_file.stem)
            if image is None:
                # Kept with the usual name: the sample fails at inference (counted), not the whole load.
                image = image_dir / f"{text_file.stem}.jpg"
                self.report("missing_media", f"{text_file}: no image {text_file.stem}.jpg/.png in {image_dir}")
            elif image.stat().st_size == 0:
                self.report("empty_file", f"{image}: the image file is empty (its questions will fail)")
            for number, line in enumerate(lines):
                question, sep, answer = line.rpartition("\t")
                if not sep or answer.strip().lower() not in ANSWERS or not question.strip():
                    self.report(
                        "malformed_record", f"{text_file}:{number + 1}: expected '<question>\\t<Yes|No>', got {line!r}"
                    )
                    continue
                samples.append(
                    Sample(
                        id=f"{task}/{image.name}/{number}",
                        question=question.strip(),
                        answer=ANSWERS[answer.strip().lower()],
                        category=task,
                        media=[image_media(str(image))],
                        meta={"image": image.name},
                    )
                )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        # The official VideoLLaMA3 prompt: the release's " Please answer yes or no." replaced by the
        # short-answer instruction, then "Please answer yes or no." on its own line.
        question = sample.question.replace(YES_NO_SUFFIX, "\n" + prompts.SHORT_ANSWER_USING)
        return user_turn(image_item(sample.media[0]["image"]), text_item(f"{question}\nPlease answer yes or no."))

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            prediction.extracted = None if prediction.failed else extract_yes_no(prediction.response)
            prediction.correct = prediction.extracted == prediction.sample.answer
            prediction.score = float(prediction.correct)
        scores = mme_scores((p.sample.category, p.sample.meta["image"], p.correct) for p in predictions)
        return {**scores, **counts(predictions)}
