"""MMMU validation (Yue et al., 2024): 900 college-level multimodal questions over 30 subjects.

Layout (``MMMU/MMMU`` on the Hugging Face hub)::

    MMMU/
      Accounting/validation-00000-of-00001.parquet   columns: id, question, options (a Python list as a
      Agriculture/validation-00000-of-00001.parquet  string), explanation, image_1 ... image_7 (HF images),
      ...                                            img_type, answer, topic_difficulty, question_type
                                                     ("multiple-choice" | "open"), subfield

Prompts follow the official code in its default (non-interleaved) mode: the images referenced by
``<image k>`` in the question and the options come first (sorted, each once), then the text with the
MMMU LLaVA templates. Answers are parsed with MMMU's own rules, except that an unreadable multiple-choice
answer is counted as unparseable instead of replaced by a random letter.
"""

from __future__ import annotations

import ast
import re
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
    letters_for,
    summarize,
    text_item,
)
from ..extraction import extract_choice
from ..io import ParquetImage, parquet_columns, read_parquet
from ..metrics import mmmu_eval_open, mmmu_parse_choice, mmmu_parse_open

DISCIPLINES = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
SUBJECT_TO_DISCIPLINE = {subject: discipline for discipline, subjects in DISCIPLINES.items() for subject in subjects}
_IMAGE_REF = re.compile(r"<image (\d+)>")


def _subject(sample_id: str, folder: str) -> str:
    # ids read "validation_<Subject>_<n>"; the subject may contain underscores.
    match = re.fullmatch(r"(?:validation|dev|test)_(.+)_\d+", sample_id)
    return match.group(1) if match else folder


PUBLISHED_VALIDATION = 900  # 30 per subject


def subset_of_subjects(files: list[Path]) -> bool:
    """Whether ``files`` cover fewer than the 30 subjects (a deliberate subset: no published count applies)."""
    return len({file.parent.name for file in files}) < len(SUBJECT_TO_DISCIPLINE)


def _is_list_literal(value: Any) -> bool:
    try:
        return isinstance(ast.literal_eval(str(value)), (list, tuple))
    except (ValueError, SyntaxError):
        return False


def _parse_list(value: str) -> list[str]:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return [value]
    return [str(v) for v in parsed] if isinstance(parsed, (list, tuple)) else [str(parsed)]


class MMMU(Benchmark):
    """MMMU val: accuracy overall, per discipline and per subject."""

    modality = "image"
    folder = "MMMU"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        files = sorted(root.glob("*/validation-*.parquet")) or sorted(root.glob("validation-*.parquet"))
        if not files:
            raise DatasetError(f"{root}: expected <Subject>/validation-00000-of-00001.parquet files")
        samples = []
        for file in files:
            columns = parquet_columns(file)
            image_columns = [c for c in columns if re.fullmatch(r"image_\d+", c)]
            text_columns = [c for c in columns if c not in image_columns]
            for row_index, row in enumerate(read_parquet(file, text_columns)):
                options = _parse_list(row["options"]) if row.get("options") else []
                multiple_choice = row["question_type"] == "multiple-choice"
                if multiple_choice and not _is_list_literal(row.get("options")):
                    self.report(
                        "malformed_record", f"{file}: {row['id']}: options {row.get('options')!r} are not a list"
                    )
                if multiple_choice and str(row["answer"]).strip() not in letters_for(options):
                    self.report(
                        "answer_not_in_options",
                        f"{file}: {row['id']}: answer {row['answer']!r} is not one of the {len(options)} option letters",
                    )
                refs = sorted({int(k) for text in [row["question"], *options] for k in _IMAGE_REF.findall(text)})
                images = [image_media(ParquetImage(str(file), row_index, f"image_{k}")) for k in refs]
                subject = _subject(str(row["id"]), file.parent.name)
                samples.append(
                    Sample(
                        id=str(row["id"]),
                        question=row["question"],
                        answer=str(row["answer"]).strip() if multiple_choice else row["answer"],
                        options=options if multiple_choice else [],
                        category=subject,
                        media=images,
                        meta={"question_type": row["question_type"], "discipline": SUBJECT_TO_DISCIPLINE.get(subject)},
                    )
                )
        if not subset_of_subjects(files):
            self.check_count(len(samples), PUBLISHED_VALIDATION, f"{root} (all 30 subjects)")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        letters = letters_for(sample.options) if sample.options else ""
        content: list[dict[str, Any]] = [image_item(media["image"]()) for media in sample.media]
        content.append(text_item(prompts.mmmu(sample.question, sample.options or None, letters)))
        return [{"role": "user", "content": content}]

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted, prediction.correct = None, False
            if prediction.failed:
                prediction.score = 0.0
                continue
            if sample.meta["question_type"] == "multiple-choice":
                letters = letters_for(sample.options)
                index2ans = dict(zip(letters, sample.options))
                choice = mmmu_parse_choice(prediction.response, list(letters), index2ans)
                prediction.extracted = choice or extract_choice(prediction.response, sample.options, letters)
                prediction.correct = prediction.extracted == sample.answer
            else:
                parsed = mmmu_parse_open(prediction.response)
                prediction.extracted = parsed or None
                answers = _parse_list(sample.answer) if str(sample.answer).startswith("[") else str(sample.answer)
                prediction.correct = bool(parsed) and mmmu_eval_open(answers, parsed)
            prediction.score = float(prediction.correct)
        return summarize(
            predictions,
            groups={"by_discipline": lambda p: p.sample.meta["discipline"], "by_subject": lambda p: p.sample.category},
        )
