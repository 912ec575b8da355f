"""Command-line options that several subcommands share (``eval`` and ``infer`` run a model the same way)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_model_runtime_arguments(parser: argparse.ArgumentParser, resumes: str) -> argparse._ArgumentGroup:
    """``--device``, ``--dtype``, ``--overwrite``, ``--predictor``, ``--dist-timeout``, ``--no-progress``
    in a "runtime" group (returned, for a command's own additions); ``resumes``: what --overwrite discards."""
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", help="default: cuda:<LOCAL_RANK> when available, else cpu")
    runtime.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16"
    )
    runtime.add_argument("--overwrite", action="store_true", help=f"discard earlier {resumes} instead of resuming")
    runtime.add_argument(
        "--predictor",
        metavar="MODULE:FACTORY",
        help="another backend: FACTORY(model, settings, device=, dtype=) returns an object with generate(requests)",
    )
    runtime.add_argument(
        "--dist-timeout", type=positive_float, default=4 * 3600, help="seconds a process waits for the others (14400)"
    )
    runtime.add_argument("--no-progress", action="store_true", help="no progress bars")
    return runtime
