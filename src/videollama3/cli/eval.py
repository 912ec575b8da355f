"""``videollama3 eval``: score a checkpoint on benchmarks with the official VideoLLaMA3 settings.

Data parallel with ``torchrun --nproc-per-node N -m videollama3 eval ...``; resumable (rerun the same
command); ``--rescore`` recomputes the metrics from the saved predictions.
"""

from __future__ import annotations

import argparse

from ..evaluation.base import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_VISUAL_TOKENS,
)
from .options import add_model_runtime_arguments, positive_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint folder or hub name (either layout)")
    parser.add_argument("--benchmark", help="benchmark name(s), comma-separated (see --list)")
    parser.add_argument(
        "--data-root",
        action="append",
        metavar="DIR|NAME=DIR",
        help="dataset folder; with several benchmarks a folder holding one folder per benchmark, or NAME=DIR "
        "per benchmark (repeatable)",
    )
    parser.add_argument("--output", default="eval_results", help="results folder (default: eval_results)")
    parser.add_argument("--limit", type=positive_int, help="only the first N samples of each benchmark")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="samples per generate call (default 1)")
    settings = parser.add_argument_group("inference settings (defaults: the official evaluation settings)")
    settings.add_argument(
        "--fps", type=positive_float, default=DEFAULT_FPS, help=f"video frames per second ({DEFAULT_FPS})"
    )
    settings.add_argument(
        "--max-frames",
        type=positive_int,
        default=DEFAULT_MAX_FRAMES,
        help=f"frames per video at most ({DEFAULT_MAX_FRAMES})",
    )
    settings.add_argument(
        "--max-visual-tokens",
        type=positive_int,
        default=DEFAULT_MAX_VISUAL_TOKENS,
        help=f"visual-token budget per sample ({DEFAULT_MAX_VISUAL_TOKENS})",
    )
    settings.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"generation limit, greedy decoding ({DEFAULT_MAX_NEW_TOKENS})",
    )
    runtime = add_model_runtime_arguments(parser, "predictions")
    runtime.add_argument("--rescore", action="store_true", help="only score the predictions already in --output")
    runtime.add_argument(
        "--strict",
        action="store_true",
        help="fail on any data problem a reader reports (empty files, missing media...) instead of recording it",
    )
    runtime.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    judge = parser.add_argument_group(
        "LLM judge (only benchmarks whose official metric needs one: activitynet_qa, mmvu)"
    )
    judge.add_argument(
        "--judge-endpoint", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"
    )
    judge.add_argument("--judge-model", default="gpt-4o-mini", help="model name sent to the judge endpoint")
    judge.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")


def _data_roots(values: list[str] | None) -> dict[str, str]:
    roots: dict[str, str] = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if sep and name and "/" not in name and "\\" not in name:
            roots[name] = folder
        else:
            roots[""] = value
    return roots


def run(args: argparse.Namespace) -> int:
    import logging

    from ..evaluation import EvalJob, EvalSettings, available_benchmarks, build_predictor, evaluate
    from ..evaluation.base import EvaluationError
    from ..evaluation.judge import judge_from_args

    if args.list:
        for name, description in available_benchmarks().items():
            print(f"{name:18s} {description}")
        return 0
    if not args.benchmark:
        raise EvaluationError("--benchmark is required (see --list)")
    if not args.data_root:
        raise EvaluationError("--data-root is required")
    if not args.model and not args.rescore:
        raise EvaluationError("--model is required (or --rescore to score saved predictions)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = EvalSettings(
        fps=args.fps,
        max_frames=args.max_frames,
        max_visual_tokens=args.max_visual_tokens,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    names = [n.strip() for n in args.benchmark.split(",") if n.strip()]

    def factory():
        return build_predictor(args.model, settings, spec=args.predictor, device=args.device, dtype=args.dtype)

    job = EvalJob(
        benchmarks=names,
        data_root=_data_roots(args.data_root),
        output=args.output,
        settings=settings,
        predictor_factory=factory if args.model else None,
        model_name=args.model,
        limit=args.limit,
        overwrite=args.overwrite,
        rescore=args.rescore,
        judge=judge_from_args(args.judge_endpoint, args.judge_model, args.judge_api_key_env),
        dist_timeout=args.dist_timeout,
        show_progress=not args.no_progress,
        strict=args.strict,
    )
    evaluate(job)
    return 0
