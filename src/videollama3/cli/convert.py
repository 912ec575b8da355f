"""``videollama3 convert SRC DST --to {official,hf}``: rewrite a checkpoint in the other layout."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint folder or hub name (either layout)")
    parser.add_argument("dst", help="output folder (must not exist or be empty)")
    parser.add_argument("--to", choices=("official", "hf"), required=True, help="target layout")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
    parser.add_argument(
        "--video-token-id",
        type=int,
        default=None,
        help="hf layout: id of the video placeholder token (default: the tokenizer's <|video_pad|>)",
    )


def run(args: argparse.Namespace) -> int:
    from ..model.layouts import convert_checkpoint
    from ..model.modeling import VideoLLaMA3ForCausalLM

    out = convert_checkpoint(
        args.src,
        args.dst,
        to=args.to,
        max_shard_size=args.max_shard_size,
        video_token_id=args.video_token_id,
        model_class=VideoLLaMA3ForCausalLM,  # the source is checked against the model's parameters first
    )
    print(f"wrote {args.to} checkpoint to {out}")
    return 0
