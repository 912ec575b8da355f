"""AI2D (Kembhavi et al., 2016): science diagrams, four-option questions; test split (3,088 questions).

Layouts (either)::

    ai2d/                                  the AllenAI release (ai2d-all.zip)
      questions/<image>.png.json           {"imageName", "questions": {text: {"answerTexts": [...],
                                           "correctAnswer": index, "abcLabel": bool, "questionId"}}}
      images/<image>.png
      ai2d_test_ids.csv                    the test split: one image id per line (all images if absent)

    AI2D_TEST.tsv                          VLMEvalKit's file (what the official evaluation converts):
                                           index, question, A, B, C, D, answer, image (base64)[, category]
"""

from __future__ import annotations

from pathlib import Path

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, image_item, image_media, letters_for, text_item, user_turn
from ..io import decode_base64_image, first_existing, read_csv, read_json
from .common import MultipleChoiceBenchmark, by_category, score_choices

PUBLISHED_TEST = 3088


class AI2D(MultipleChoiceBenchmark):
    """AI2D test: accuracy (overall, and per category where the file has one)."""

    modality = "image"
    folder = "ai2d"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        tsv = first_existing(root / "AI2D_TEST.tsv", *sorted(root.glob("*.tsv")))
        if tsv is not None:
            samples = self._load_tsv(tsv)
            if tsv.name == "AI2D_TEST.tsv":
                self.check_count(len(samples), PUBLISHED_TEST, str(tsv))
            return samples
        if (root / "questions").is_dir():
            return self._load_release(root)
        raise DatasetError(f"{root}: expected questions/ + images/ (AI2D release) or AI2D_TEST.tsv")

    def _load_release(self, root: Path) -> list[Sample]:
        ids_file = first_existing(root / "ai2d_test_ids.csv", root / "test_ids.csv")
        test_ids = None
        if ids_file is not None:
            test_ids = {line.strip().split(",")[0].removesuffix(".png") for line in ids_file.read_text().splitlines()}
            test_ids.discard("")
        samples = []
        files = sorted((root / "questions").glob("*.json"), key=lambda p: _numeric_key(p.name))
        for file in files:
            record = read_json(file)
            image_name = record.get("imageName", file.name.removesuffix(".json"))
            if test_ids is not None and image_name.removesuffix(".png") not in test_ids:
                continue
            image = root / "images" / image_name
            self.check_media(image, image_name)
            for text, question in record["questions"].items():
                options = [str(o) for o in question.get("answerTexts") or []]
                correct = question.get("correctAnswer")
                if not options or not str(correct).isdigit() or int(correct) >= len(options):
                    self.report(
                        "answer_not_in_options", f"{file}: {text!r}: answer {correct!r} of {len(options)} options"
                    )
                    continue
                samples.append(
                    Sample(
                        id=str(question.get("questionId", f"{image_name}-{len(samples)}")),
                        question=text,
                        answer=letters_for(options)[int(question["correctAnswer"])],
                        options=options,
                        media=[image_media(str(image))],
                        meta={"abcLabel": question.get("abcLabel")},
                    )
                )
        if test_ids is not None:
            self.check_count(len(samples), PUBLISHED_TEST, f"{root} (test ids of {ids_file.name})")
        return samples

    def _load_tsv(self, path: Path) -> list[Sample]:
        samples = []
        for row in read_csv(path, delimiter="\t"):
            options = []
            for letter in "ABCDEFGH":
                value = row.get(letter)
                if value is None or value.strip() in ("", "nan"):
                    break
                options.append(value)
            answer = (row.get("answer") or "").strip().upper()
            if answer not in letters_for(options):
                self.report("answer_not_in_options", f"{path}: index {row.get('index')}: answer {answer!r}")
            if "image_path" in row and row["image_path"]:
                image = str(path.parent / row["image_path"])
                self.check_media(image, str(row["index"]))
            else:
                data = row["image"]
                image = lambda data=data: decode_base64_image(data)  # noqa: E731  (decoded lazily)
            samples.append(
                Sample(
                    id=str(row["index"]),
                    question=row["question"],
                    answer=answer,
                    options=options,
                    category=row.get("category") or None,
                    media=[image_media(image)],
                )
            )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        image = sample.media[0]["image"]
        return user_turn(
            image_item(image() if callable(image) else image),
            text_item(prompts.image_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        return score_choices(predictions, {"by_category": by_category})


def _numeric_key(name: str):
    stem = name.split(".")[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)
