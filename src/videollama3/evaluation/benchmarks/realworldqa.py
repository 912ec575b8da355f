"""RealWorldQA (xAI, 2024): 765 real-world spatial questions with the answer instruction in the question.

Layout (``xai-org/RealworldQA`` on the Hugging Face hub)::

    RealWorldQA/
      data/test-00000-of-00002.parquet ...     columns: image (HF image), question, answer

Questions end with their own instruction ("Please answer directly with only the letter of the correct
option and nothing else." or "... a single word or number."), so they are asked as they are. Letter
answers are read with the multiple-choice extractor (options from the ``A. ...`` lines of the question);
other answers must match after lowercasing and trimming (numbers compare numerically).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
from ..extraction import clean_response, extract_choice, parse_number
from ..io import ParquetImage, parquet_columns, read_parquet

PUBLISHED_QUESTIONS = 765
_OPTION_LINE = re.compile(r"^\s*([A-F])[\.\)]\s*(.+)$")


class RealWorldQA(Benchmark):
    """RealWorldQA: accuracy."""

    modality = "image"
    folder = "RealWorldQA"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        files = sorted(root.glob("data/test-*.parquet")) or sorted(root.glob("test-*.parquet"))
        if not files:
            raise DatasetError(f"{root}: expected data/test-*.parquet")
        samples = []
        for file in files:
            columns = [c for c in parquet_columns(file) if c != "image"]
            for index, row in enumerate(read_parquet(file, columns)):
                letters, options = "", []
                for line in str(row["question"]).split("\n"):
                    match = _OPTION_LINE.match(line)
                    if match:
                        letters += match.group(1)
                        options.append(match.group(2).strip())
                answer = str(row["answer"]).strip()
                if re.fullmatch(r"[A-F]", answer) and letters and answer not in letters:
                    self.report("answer_not_in_options", f"{file.stem}/{index}: answer {answer} not among {letters}")
                samples.append(
                    Sample(
                        id=f"{file.stem}/{index}",
                        question=row["question"],
                        answer=answer,
                        options=options,
                        media=[image_media(ParquetImage(str(file), index, "image"))],
                        meta={"letters": letters},
                    )
                )
        self.check_count(len(samples), PUBLISHED_QUESTIONS, ", ".join(str(f) for f in files))
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(image_item(sample.media[0]["image"]()), text_item(sample.question))

    @staticmethod
    def extract(sample: Sample, response: str) -> str | None:
        answer = sample.answer
        if re.fullmatch(r"[A-F]", answer):
            return extract_choice(response, sample.options or None, sample.meta["letters"] or None)
        text = clean_response(response).strip().rstrip(".").strip()
        return text or None

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for prediction in predictions:
            sample = prediction.sample
            prediction.extracted = None if prediction.failed else self.extract(sample, prediction.response)
            prediction.correct = prediction.extracted is not None and _same(prediction.extracted, sample.answer)
            prediction.score = float(prediction.correct)
        return summarize(predictions)


def _same(prediction: str, answer: str) -> bool:
    if prediction.strip().lower() == answer.strip().lower():
        return True
    a, b = parse_number(prediction), parse_number(answer)
    return a is not None and b is not None and a == b
