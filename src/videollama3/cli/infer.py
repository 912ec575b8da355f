"""``videollama3 infer``: answer every conversation of a JSONL file into another JSONL file.

Batched, data parallel with ``torchrun --nproc-per-node N -m videollama3 infer ...``, resumable (rerun the
same command); the input and output formats are in docs/inference.md.
"""

from __future__ import annotations

import argparse

from ..evaluation.base import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_VISUAL_TOKENS
from .options import add_model_runtime_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or hub name (either layout)")
    parser.add_argument(
        "--input",
        required=True,
        help='JSONL file, one {"id": ..., "conversation": [...]} per line; relative media paths are read from '
        "its folder",
    )
    parser.add_argument(
        "--output", required=True, help='JSONL file of {"id": ..., "answer": ...} / {"id": ..., "error": ...}'
    )
    parser.add_argument("--batch-size", type=int, default=1, help="rows per generate call (default 1)")
    generation = parser.add_argument_group("generation (defaults of the rows that do not set them)")
    generation.add_argument(
        "--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help=f"({DEFAULT_MAX_NEW_TOKENS})"
    )
    generation.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    generation.add_argument("--temperature", type=float, default=1.0, help="when sampling (1.0)")
    generation.add_argument("--top-p", type=float, default=1.0, help="when sampling (1.0)")
    generation.add_argument("--top-k", type=int, default=0, help="when sampling; 0: no top-k filtering (0)")
    generation.add_argument(
        "--seed", type=int, default=0, help="a sampled row without its own seed is seeded from this and its id (0)"
    )
    generation.add_argument(
        "--max-visual-tokens",
        type=int,
        default=DEFAULT_MAX_VISUAL_TOKENS,
        help=f"visual-token budget per row ({DEFAULT_MAX_VISUAL_TOKENS})",
    )
    add_model_runtime_arguments(parser, "answers")

def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from ..evaluation import EvalSettings, build_predictor
    from ..evaluation.batch_inference import GenerationOptions, run_batch_inference

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    defaults = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
    )
    # Only the visual-token budget of the evaluation settings applies: videos are sampled as each row says.
    settings = EvalSettings(max_visual_tokens=args.max_visual_tokens, max_new_tokens=args.max_new_tokens)

    def factory():
        return build_predictor(args.model, settings, spec=args.predictor, device=args.device, dtype=args.dtype)

    counts = run_batch_inference(
        args.input,
        args.output,
        factory,
        defaults=defaults,
        batch_size=args.batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
        dist_timeout=args.dist_timeout,
        show_progress=not args.no_progress,
    )
    if counts:
        print(
            f"{args.output}: {counts['answered']} of {counts['rows']} rows answered, {counts['errors']} errors",
            file=sys.stderr,
        )
    return 0
