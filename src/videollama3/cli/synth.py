"""``videollama3 synth``: write the synthetic visual world (images, videos, annotations), a held-out
benchmark, or the small model's tokenizer and random starting checkpoint.

Examples::

    videollama3 synth --out data/synthetic --seed 0 --images 3000 --videos 1500      # training data
    videollama3 synth --out data/synthetic-bench --benchmark --images 200 --videos 200
    videollama3 synth --out runs/synthetic/data --images 3000 --videos 1500 --init-model runs/synthetic/init

The data are in the official annotation format (see ``videollama3.synthetic.writer``); ``--init-model``
also writes the random small model the ``synthetic`` training recipe starts from.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0); items are deterministic by seed")
    parser.add_argument("--images", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--videos", type=int, default=500, help="number of videos (default 500)")
    parser.add_argument("--texts", type=int, help="number of text-only samples (default: half the images)")
    parser.add_argument("--questions", type=int, default=4, help="questions per image / video conversation (default 4)")
    parser.add_argument(
        "--system-ratio",
        type=float,
        default=0.3,
        help="fraction of samples that start with the default system prompt (default 0.3)",
    )
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="write a held-out benchmark (one question per item, seeds disjoint from training) instead",
    )
    parser.add_argument(
        "--init-model",
        type=Path,
        metavar="DIR",
        help="also write the tokenizer and the randomly initialised small model (the recipe's starting point)",
    )
    parser.add_argument(
        "--tokenizer-from",
        type=Path,
        metavar="DIR",
        help="with --init-model: reuse this folder's tokenizer (e.g. the bundled model's) instead of training one",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    for name in ("images", "videos", "texts", "questions"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")
    if not 0.0 <= args.system_ratio <= 1.0:
        raise ConfigError(f"--system-ratio must be in [0, 1], got {args.system_ratio}")

    from ..synthetic.writer import WorldSpec, write_benchmark, write_dataset

    progress = not args.no_progress
    if args.benchmark:
        texts = args.texts if args.texts is not None else 0
        file = write_benchmark(args.out, args.seed, args.images, args.videos, texts, progress=progress)
        print(f"wrote the held-out benchmark (seed {args.seed}): {file}")
    else:
        spec = WorldSpec(
            seed=args.seed,
            images=args.images,
            videos=args.videos,
            texts=args.texts,
            questions_per_image=args.questions,
            questions_per_video=args.questions,
            system_ratio=args.system_ratio,
        )
        files = write_dataset(args.out, spec, progress=progress)
        print(f"wrote {spec.images} images, {spec.videos} videos, {spec.num_texts} text samples to {args.out}")
        for path in files.values():
            print(f"  {path}")
    if args.init_model is not None:
        from ..synthetic.model import build_initial_model

        build_initial_model(args.init_model, seed=args.seed, tokenizer_from=args.tokenizer_from)
        print(f"wrote the initial small model to {args.init_model}")
    return 0
