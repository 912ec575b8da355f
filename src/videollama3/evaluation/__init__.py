"""Benchmark evaluation with the official VideoLLaMA3 settings: ``videollama3 eval`` and its Python API.

>>> from videollama3.evaluation import EvalJob, EvalSettings, evaluate, available_benchmarks
>>> job = EvalJob(["mvbench"], "data/MVBench", "results", EvalSettings(), lambda: my_predictor)
>>> evaluate(job)  # doctest: +SKIP

See ``docs/evaluation.md`` for the benchmarks, their on-disk layouts, prompts and metrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it; imported on first use, so that the registry, the readers and
# ``videollama3 eval --help`` load no torch (PEP 562).
_LAZY_NAMES = {
    **dict.fromkeys(
        [
            "Benchmark",
            "DatasetError",
            "EvalSettings",
            "EvaluationError",
            "Prediction",
            "Sample",
            "frames_item",
            "image_item",
            "text_item",
            "user_turn",
            "video_item",
        ],
        ".base",
    ),
    **dict.fromkeys(["ModelPredictor", "Predictor", "Request", "build_predictor"], ".predictors"),
    **dict.fromkeys(["available_benchmarks", "get_benchmark", "register_benchmark"], ".registry"),
    "format_summary": ".results",
    "EvalJob": ".runner",
    "evaluate": ".runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .base import (
        Benchmark,
        DatasetError,
        EvalSettings,
        EvaluationError,
        Prediction,
        Sample,
        frames_item,
        image_item,
        text_item,
        user_turn,
        video_item,
    )
    from .predictors import ModelPredictor, Predictor, Request, build_predictor
    from .registry import available_benchmarks, get_benchmark, register_benchmark
    from .results import format_summary
    from .runner import EvalJob, evaluate

__all__ = [
    "Benchmark",
    "DatasetError",
    "EvalJob",
    "EvalSettings",
    "EvaluationError",
    "ModelPredictor",
    "Prediction",
    "Predictor",
    "Request",
    "Sample",
    "available_benchmarks",
    "build_predictor",
    "evaluate",
    "format_summary",
    "frames_item",
    "get_benchmark",
    "image_item",
    "register_benchmark",
    "text_item",
    "user_turn",
    "video_item",
]
