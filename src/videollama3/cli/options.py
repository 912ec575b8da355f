"""Command-line options that several subcommands share (``eval`` and ``infer`` run a model the same way)."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..synthetic import BUNDLED_MODEL_NAME


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


def model_or_bundled(
    model: str | None, example: str = "DAMO-NLP-SG/VideoLLaMA3-2B", bundled_name: str = BUNDLED_MODEL_NAME
) -> str:
    """``--model``, or a bundled synthetic-world model (saying so on stderr: it only knows that world).

    ``bundled_name``: which one (default: the model of chat and demo; ``NARRATOR_MODEL_NAME``: live's)."""
    if model:
        return model
    from ..errors import CheckpointError
    from ..synthetic import default_model_path

    try:
        bundled = default_model_path(bundled_name)
    except (CheckpointError, ConfigError) as exc:
        raise ConfigError(
            f"no --model given and the bundled model cannot be used ({exc}); or pass --model with a VideoLLaMA3 "
            f"checkpoint folder or Hub id (e.g. {example})"
        ) from exc
    if not (bundled / "config.json").is_file():
        raise ConfigError(
            f"no --model given and the bundled model is missing ({bundled}): reinstall videollama3, "
            f"or pass --model with a VideoLLaMA3 checkpoint folder or Hub id (e.g. {example})"
        )
    kind = "model" if bundled_name == BUNDLED_MODEL_NAME else "narrator"
    print(f"model: {bundled} (bundled synthetic-world {kind}; --model selects another)", file=sys.stderr)
    return str(bundled)
