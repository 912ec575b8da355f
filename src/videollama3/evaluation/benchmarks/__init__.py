"""One module per benchmark; :mod:`videollama3.evaluation.registry` names them."""

from __future__ import annotations

from .common import MultipleChoiceBenchmark, score_choices

__all__ = ["MultipleChoiceBenchmark", "score_choices"]
