"""Benchmark registry: names -> benchmark classes (and the options of each registered variant).

Built-in benchmarks are listed as import paths, so ``videollama3 eval --help`` and ``--list`` import
nothing heavy. Other code adds benchmarks with :func:`register_benchmark` (a decorator, or a call), or
from another installed package through the entry-point group ``videollama3.benchmarks``::

    [project.entry-points."videollama3.benchmarks"]
    my_bench = "my_package.bench:MyBenchmark"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from .base import Benchmark, EvaluationError

ENTRY_POINT_GROUP = "videollama3.benchmarks"


@dataclass(frozen=True)
class _Entry:
    target: str | type[Benchmark]  # "module:Class" or the class itself
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def load(self) -> type[Benchmark]:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(cls, type) and issubclass(cls, Benchmark)):
            raise EvaluationError(f"{self.target} is not a Benchmark subclass")
        return cls


_PKG = "videollama3.evaluation.benchmarks"
_REGISTRY: dict[str, _Entry] = {}


def _builtin(name: str, target: str, description: str, **options: Any) -> None:
    _REGISTRY[name] = _Entry(f"{_PKG}.{target}", options, description)


# Video
_builtin("mvbench", "mvbench:MVBench", "MVBench, 20 tasks x 200 multiple-choice questions")
_builtin("videomme", "videomme:VideoMME", "Video-MME, without and with subtitles", subtitles="both")
_builtin("videomme_wo_sub", "videomme:VideoMME", "Video-MME without subtitles", subtitles="without")
_builtin("videomme_w_sub", "videomme:VideoMME", "Video-MME with subtitles", subtitles="with")
_builtin("mlvu", "mlvu:MLVU", "MLVU dev, 7 multiple-choice tasks (M-Avg)")
_builtin("longvideobench", "longvideobench:LongVideoBench", "LongVideoBench val, subtitles interleaved")
_builtin("egoschema", "egoschema:EgoSchema", "EgoSchema public 500-question subset")
_builtin("egoschema_full", "egoschema:EgoSchema", "EgoSchema full set (Kaggle submission file)", subset=False)
_builtin("perception_test", "perception_test:PerceptionTest", "Perception Test val, multiple choice")
_builtin("nextqa", "nextqa:NExTQA", "NExT-QA multiple choice (test.csv)", split="test")
_builtin("nextqa_val", "nextqa:NExTQA", "NExT-QA multiple choice (val.csv)", split="val")
_builtin("tempcompass", "tempcompass:TempCompass", "TempCompass multi-choice, yes/no, caption matching")
_builtin("charades_sta", "charades_sta:CharadesSTA", "Charades-STA temporal grounding (mIoU, R1@0.3/0.5/0.7)")
_builtin("activitynet_qa", "activitynet_qa:ActivityNetQA", "ActivityNet-QA (LLM judge)")
_builtin("mmvu", "mmvu:MMVU", "MMVU val, direct answers (LLM judge)", cot=False)
_builtin("mmvu_cot", "mmvu:MMVU", "MMVU val, chain of thought (LLM judge)", cot=True)
# Image
_builtin("docvqa", "docvqa:DocVQA", "DocVQA val (ANLS)", split="val")
_builtin("docvqa_test", "docvqa:DocVQA", "DocVQA test (submission file)", split="test")
_builtin("infovqa", "docvqa:InfoVQA", "InfographicVQA val (ANLS)", split="val")
_builtin("infovqa_test", "docvqa:InfoVQA", "InfographicVQA test (submission file)", split="test")
_builtin("chartqa", "chartqa:ChartQA", "ChartQA test, human + augmented (relaxed accuracy)")
_builtin("ai2d", "ai2d:AI2D", "AI2D test")
_builtin("mmmu", "mmmu:MMMU", "MMMU val")
_builtin("mathvista", "mathvista:MathVista", "MathVista testmini (rule-based answer extraction)")
_builtin("ocrbench", "ocrbench:OCRBench", "OCRBench (score out of 1000)")
_builtin("realworldqa", "realworldqa:RealWorldQA", "RealWorldQA")
_builtin("mme", "mme:MME", "MME perception / cognition (acc + acc+)")
_builtin("gqa", "gqa:GQA", "GQA testdev balanced")
# The synthetic world's held-out questions (write them with `videollama3 synth --benchmark --out DIR`)
_REGISTRY["synthetic"] = _Entry(
    "videollama3.synthetic.benchmark:SyntheticBenchmark", {}, "synthetic world: held-out image / video questions"
)

_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, _Entry(ep.value, {}, f"from {ep.value}"))


def register_benchmark(
    name: str, cls: type[Benchmark] | str | None = None, *, description: str = "", **options: Any
) -> Callable[[type[Benchmark]], type[Benchmark]] | type[Benchmark]:
    """Register a benchmark under ``name`` (replacing any previous one).

    Use as a decorator (``@register_benchmark("my_bench")``) or a call
    (``register_benchmark("my_bench_hard", MyBench, difficulty="hard")``); ``options`` are passed to the
    class constructor, so one class can serve several variants. ``cls`` may be ``"module:Class"``.
    """

    def decorate(target: type[Benchmark]) -> type[Benchmark]:
        if isinstance(target, type) and not issubclass(target, Benchmark):
            raise EvaluationError(f"{target!r} is not a Benchmark subclass")
        _REGISTRY[name] = _Entry(target, dict(options), description or (target.__doc__ or "").strip().split("\n")[0])
        return target

    if cls is None:
        return decorate
    if isinstance(cls, str):
        _REGISTRY[name] = _Entry(cls, dict(options), description)
        return cls  # type: ignore[return-value]
    return decorate(cls)


def available_benchmarks() -> dict[str, str]:
    """Registered names and their one-line descriptions, sorted by name."""
    _load_entry_points()
    return {name: entry.description for name, entry in sorted(_REGISTRY.items())}


def get_benchmark(name: str) -> Benchmark:
    """A new instance of the benchmark registered as ``name``."""
    _load_entry_points()
    entry = _REGISTRY.get(name)
    if entry is None:
        known = ", ".join(sorted(_REGISTRY))
        raise EvaluationError(f"unknown benchmark {name!r}; known: {known}")
    return entry.load()(name=name, **entry.options)
