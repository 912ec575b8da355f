"""The held-out synthetic benchmark: new seeds of the synthetic world, accuracy per task type.

It is a regular :class:`~videollama3.evaluation.base.Benchmark` (``synthetic`` in the evaluation
registry), so ``videollama3 eval --model DIR --benchmark synthetic --data-root BENCH`` runs it once the
data is written with ``videollama3 synth --benchmark --out BENCH``. :func:`evaluate` does both in one
call (data written to a cache folder, evaluation through the same runner).

Reported metrics (percent): ``accuracy`` (all questions), ``image`` (all image questions), ``video`` and
``video_temporal`` (video questions about direction, order, times, counts of events and colour changes),
``text``, and ``per_task`` / ``per_kind`` (open / multiple choice).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..evaluation.base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    media_items,
    summarize,
    text_item,
    user_turn,
)
from . import tasks
from .writer import BENCHMARK_FILE, generator_fingerprint, read_benchmark, write_benchmark

# Video tasks whose answer depends on time (all but counting the objects).
TEMPORAL_TASKS = ("direction", "when", "order", "times", "colour_change")
MAX_NEW_TOKENS = 24


class SyntheticBenchmark(Benchmark):
    """Held-out synthetic world: image, video (temporal) and text questions with exact answers."""

    modality = "video"
    primary_metric = "accuracy"
    folder = "synthetic"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        if not (root / BENCHMARK_FILE).is_file():
            raise DatasetError(
                f"{root}: no {BENCHMARK_FILE}; write the benchmark first: videollama3 synth --benchmark --out {root}"
            )
        samples = []
        for item in read_benchmark(root):
            media = []
            if item.media is not None:
                path = str(root / item.media)
                media = [
                    {"type": "video", "path": path} if item.modality == "video" else {"type": "image", "image": path}
                ]
            samples.append(
                Sample(
                    id=item.id,
                    question=item.qa.question,
                    answer=item.qa.answer,
                    options=list(item.qa.options),
                    category=item.qa.task,
                    media=media,
                    meta={"modality": item.modality, "prompt": item.qa.prompt},
                )
            )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings) -> list[dict[str, Any]]:
        return user_turn(*media_items(sample, settings), text_item(sample.meta["prompt"]))

    def max_new_tokens(self, sample: Sample, settings: EvalSettings) -> int:
        return min(settings.max_new_tokens, MAX_NEW_TOKENS)

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        for p in predictions:
            s = p.sample
            qa = tasks.QA(s.question, s.answer, s.category, list(s.options))
            p.extracted = p.response
            p.correct = bool(p.response is not None and tasks.score(qa, p.response))
            p.score = float(p.correct)

        def modality(p: Prediction) -> str:
            return p.sample.meta["modality"]

        result = summarize(
            predictions,
            groups={
                "per_task": lambda p: f"{modality(p)}/{p.sample.category}",
                "per_modality": modality,
                "per_kind": lambda p: f"{modality(p)}/{'mc' if p.sample.options else 'open'}",
            },
        )
        for name, keep in (
            ("image", lambda p: modality(p) == "image"),
            ("video", lambda p: modality(p) == "video"),
            ("video_temporal", lambda p: modality(p) == "video" and p.sample.category in TEMPORAL_TASKS),
            ("text", lambda p: modality(p) == "text"),
        ):
            chosen = [p for p in predictions if keep(p)]
            result[name] = 100.0 * sum(p.score for p in chosen) / len(chosen) if chosen else 0.0
            result[f"n_{name}"] = len(chosen)
        return result


def register() -> None:
    """Register the benchmark as ``synthetic`` (idempotent)."""
    from ..evaluation.registry import register_benchmark

    register_benchmark("synthetic", SyntheticBenchmark, description=SyntheticBenchmark.__doc__.strip())


def benchmark_dir(seed: int, images: int, videos: int, texts: int, root: str | os.PathLike | None = None) -> Path:
    """Cache folder of one benchmark configuration and generator version (written once, reused)."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "videollama3-synthetic-benchmark"
    return base / f"seed{seed}-i{images}-v{videos}-t{texts}-{generator_fingerprint()}"


def ensure_benchmark(
    seed: int = 0, images: int = 100, videos: int = 100, texts: int = 0, root=None, progress: bool = False
) -> Path:
    folder = benchmark_dir(seed, images, videos, texts, root)
    if not (folder / BENCHMARK_FILE).is_file():
        write_benchmark(folder, seed=seed, images=images, videos=videos, texts=texts, progress=progress)
    return folder


def evaluate(
    model_dir: str | os.PathLike | None = None,
    n: int = 200,
    seed: int = 0,
    *,
    images: int | None = None,
    videos: int | None = None,
    texts: int = 0,
    batch_size: int = 16,
    output: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    show_progress: bool = False,
    use_token_compression: bool | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Accuracy of ``model_dir`` (default: the bundled model) on ``n`` held-out questions (half image, half
    video, from benchmark seed ``seed``), via the evaluation runner. Returns the benchmark's metrics.

    ``use_token_compression`` switches the Differential Frame Pruner on or off (default: the checkpoint's
    setting). ``device``: where the model runs (``"cuda"`` on a GPU)."""
    from ..evaluation.runner import EvalJob
    from ..evaluation.runner import evaluate as run_evaluation
    from . import default_model_path

    model_dir = str(model_dir or default_model_path())
    images = n // 2 if images is None else images
    videos = n - images if videos is None else videos
    folder = ensure_benchmark(seed, images, videos, texts, root=data_root, progress=show_progress)
    register()
    settings = EvalSettings(max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        job = EvalJob(
            ["synthetic"],
            str(folder),
            output or tmp,
            settings,
            lambda: _predictor(model_dir, settings, use_token_compression, device),
            model_name=model_dir,
            overwrite=True,
            show_progress=show_progress,
            print_summary=False,
        )
        results = run_evaluation(job)
    return results["synthetic"]["metrics"]


def _predictor(model_dir: str, settings: EvalSettings, use_token_compression: bool | None, device: str = "cpu"):
    from ..evaluation.predictors import ModelPredictor

    predictor = ModelPredictor(model_dir, settings, device=device, dtype="float32")  # the documented numbers: fp32
    if use_token_compression is not None:
        predictor.processor.use_token_compression = use_token_compression
    return predictor
