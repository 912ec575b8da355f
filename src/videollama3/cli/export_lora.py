"""``videollama3 export-lora ADAPTER_DIR OUTPUT_DIR``: merge LoRA adapters into a normal checkpoint.

The output is a plain VideoLLaMA3 checkpoint in the official layout, with the processor files, loadable by
``from_pretrained`` and ``videollama3 chat`` without PEFT.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="folder written by a LoRA stage (adapter_config.json, adapter weights)")
    parser.add_argument("output", help="where to write the merged checkpoint (must not exist or be empty)")
    parser.add_argument(
        "--base", default=None, help="base checkpoint (default: base_model_name_or_path of the adapter)"
    )
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="dtype of the saved weights")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.lora import export_merged

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    out = export_merged(args.adapter, args.output, base=args.base, dtype=dtype)
    print(f"wrote merged checkpoint to {out}")
    return 0
