"""``videollama3 train RECIPE [--set key=value ...]``: run a training recipe (all stages, or some).

RECIPE is a YAML file or the name of a packaged recipe (``videollama3 train --help`` lists them, from the
package's ``recipes`` folder).
Launch under ``torchrun`` for several GPUs / nodes; see docs/training.md.

On a Linux CPU with jemalloc installed the command restarts itself with jemalloc as the allocator (faster
steps, flat memory; ``VIDEOLLAMA3_ALLOCATOR=system`` keeps the system's, see videollama3.training.allocator).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.recipe import packaged_recipes

    parser.add_argument("recipe", help=f"recipe YAML file, or a packaged recipe name ({', '.join(packaged_recipes())})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value: train.max_steps=10 (every stage), stage2.optim.lr.llm=2e-5 (one stage), "
        "output_dir=/tmp/run (top level); repeatable",
    )
    parser.add_argument("--stages", default=None, help="comma-separated stage names to run (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="retrain stages whose final model already exists")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print the resolved recipe and exit")


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    import yaml

    from ..training.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_only:
        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
        return 0
    if getattr(args, "command_line", None) is not None:
        import torch

        from ..training.allocator import reexec_with_jemalloc

        reexec_with_jemalloc(args.command_line, uses_accelerator=torch.cuda.is_available())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..training.runner import run_recipe

    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    results = run_recipe(recipe, stages=stages, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":
        return 0
    for result in results:
        if result.losses:
            print(f"[{result.name}] {result.steps} steps, loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
    return 0
