"""Benchmark evaluation with the official VideoLLaMA3 settings: ``videollama3 eval`` and its Python API.

>>> from videollama3.evaluation import EvalSettings, evaluate, available_benchmarks
>>> evaluate(["mvbench"], "data/MVBench", "results", EvalSettings(), lambda: my_predictor)  # doctest: +SKIP

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
from .runner import evaluate, format_summary

__all__ = [
    "Benchmark",
    "DatasetError",
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
