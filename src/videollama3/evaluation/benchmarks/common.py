"""Pieces shared by the benchmarks: multiple-choice scoring and a multiple-choice base class."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..base import Benchmark, Prediction, letters_for, summarize
from ..extraction import extract_choice

GroupKey = Callable[[Prediction], "str | Iterable[str] | None"]


def score_choices(
    predictions: list[Prediction], groups: dict[str, GroupKey] | None = None, primary: str = "accuracy"
) -> dict[str, Any]:
    """Score multiple-choice predictions whose samples hold ``options`` and the correct letter.

    A sample may keep its own letters in ``meta["letters"]`` (default A, B, ... per option).
    """
    for prediction in predictions:
        sample = prediction.sample
        letters = sample.meta.get("letters") or letters_for(sample.options)
        prediction.extracted = (
            None if prediction.failed else extract_choice(prediction.response, sample.options, letters)
        )
        prediction.correct = prediction.extracted is not None and prediction.extracted == sample.answer
        prediction.score = float(prediction.correct)
    return summarize(predictions, primary, groups)


def by_category(prediction: Prediction) -> str | None:
    return prediction.sample.category


def by_meta(key: str) -> GroupKey:
    """Group by ``sample.meta[key]`` (a value or a list of values)."""

    def key_fn(prediction: Prediction):
        value = prediction.sample.meta.get(key)
        if value is None:
            return None
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)

    return key_fn


def macro_average(per_group: dict[str, float]) -> float:
    return sum(per_group.values()) / len(per_group) if per_group else 0.0


class MultipleChoiceBenchmark(Benchmark):
    """A benchmark of lettered multiple-choice questions scored by accuracy (overall and per category)."""

    category_key = "by_task"

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        return score_choices(predictions, {self.category_key: by_category})
