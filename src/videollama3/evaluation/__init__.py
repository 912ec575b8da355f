"""Benchmark evaluation with the official VideoLLaMA3 settings: ``videollama3 eval`` and its Python API.

>>> from videollama3.evaluation import EvalJob, EvalSettings, evaluate, available_benchmarks
>>> job = EvalJob(["mvbench"], "data/MVBench", "results", EvalSettings(), lambda: my_predictor)
>>> evaluate(job)  # doctest: +SKIP

See ``docs/evaluation.md`` for the benchmarks, their on-disk layouts, prompts and metrics.
"""

from __future__ import annotations

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
