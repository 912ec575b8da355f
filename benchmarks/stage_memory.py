"""Benchmark: step time and resident memory over one training stage, to compare memory allocators.

Runs ``--steps`` steps of one stage of a recipe through the trainer (its own loop and data loading) and
prints, every ``--every`` steps, the median step time of those steps and the process's resident memory.
With glibc's malloc the resident memory of a CPU run grows step after step and the steps slow down with
it; run the same command under another allocator to compare (docs/benchmarks.md, "Training").

Usage (from the repository root, after ``videollama3 train synthetic`` has written stage 2; the stage
starts from ``--init`` and writes to a temporary folder, never to the recipe's own folders)::

    python benchmarks/stage_memory.py --stage stage3 --init runs/synthetic/stage2/final --steps 250
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benchmarks/stage_memory.py ...  # jemalloc
    python benchmarks/stage_memory.py ... --malloc-trim-every 25  # glibc, trimming the heap
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
from pathlib import Path

from videollama3.distributed import destroy_distributed, init_distributed
from videollama3.training.recipe import load_recipe
from videollama3.training.trainer import StageTrainer


def resident_bytes() -> int:
    """The process's resident memory now (Linux: /proc), else its peak so far."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="synthetic", help="packaged recipe name or YAML path")
    parser.add_argument("--stage", default="stage3", help="the stage to run")
    parser.add_argument("--init", required=True, help="checkpoint folder the stage starts from")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--every", type=int, default=25, help="report every this many steps")
    parser.add_argument("--set", action="append", default=[], help="recipe override KEY=VALUE (repeatable)")
    parser.add_argument(
        "--malloc-trim-every",
        type=int,
        default=0,
        metavar="N",
        help="call glibc's malloc_trim(0) after every N steps (default 0: never)",
    )
    args = parser.parse_args()

    recipe = load_recipe(args.recipe, [*args.set, f"train.max_steps={args.steps}", "train.progress_bar=false"])
    stage = next((s for s in recipe.stages if s.name == args.stage), None)
    if stage is None:
        parser.error(f"--stage {args.stage}: the recipe has {[s.name for s in recipe.stages]}")
    if not Path(args.init, "config.json").is_file():
        parser.error(f"--init {args.init}: not a checkpoint folder (no config.json)")

    times = []
    libc = ctypes.CDLL("libc.so.6") if args.malloc_trim_every else None

    def report(step: int, stats: dict) -> None:
        if libc is not None and step % args.malloc_trim_every == 0:
            libc.malloc_trim(0)  # give freed heap pages back to the system
        times.append(stats["step_s"])
        if step % args.every == 0:
            rss = resident_bytes() / 2**30
            print(
                f"step {step:5d}  step_s {statistics.median(times[-args.every :]):.3f}  rss {rss:.2f} GiB", flush=True
            )

    env = init_distributed()
    try:
        with tempfile.TemporaryDirectory(prefix="stage-memory-") as scratch:
            StageTrainer(stage, args.init, scratch, recipe.seed, env, [report]).train()
    finally:
        destroy_distributed()


if __name__ == "__main__":
    main()
