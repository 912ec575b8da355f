"""The ``videollama3`` command line: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# subcommand -> (module, help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("videollama3.cli.chat", "answer a question about images / a video (interactive without a question)"),
    "live": ("videollama3.cli.live", "watch a video file, camera or stream; the model speaks, questions typed meanwhile"),
    "demo": ("videollama3.cli.demo", "render a synthetic video, ask the bundled model about it, show the truth"),
    "convert": ("videollama3.cli.convert", "convert a checkpoint between the official and the transformers layout"),
    "train": ("videollama3.cli.train", "train or fine-tune from a YAML recipe"),
    "data": ("videollama3.cli.data", "inspect and validate training annotations"),
    "export-lora": ("videollama3.cli.export_lora", "merge LoRA adapters into a normal checkpoint"),
    "synth": ("videollama3.cli.synth", "generate the synthetic visual world (images, videos, annotations)"),
    "serve": ("videollama3.cli.serve", "OpenAI-compatible HTTP server with a web page"),
    "eval": ("videollama3.cli.eval", "evaluate a checkpoint on benchmarks"),
    "infer": ("videollama3.cli.infer", "answer every conversation of a JSONL file (batched, resumable, torchrun)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``command`` only: listing the subcommands imports none of them
    (``videollama3 --help`` loads no torch); a subcommand's own module is imported when it is chosen."""
    parser = argparse.ArgumentParser(prog="videollama3", description="VideoLLaMA3: image and video understanding")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def _chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is not an option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    from ..errors import VideoLLaMA3Error

    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser(_chosen_command(arguments)).parse_args(arguments)
    args.command_line = sys.argv[1:] if argv is None else None  # set when this process is the command itself
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except VideoLLaMA3Error as exc:
        print(f"videollama3 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry_point() -> None:
    """``videollama3`` and ``python -m videollama3``: :func:`main`, then the end of the process.

    A process that torchrun started ends with ``os._exit`` once its output is flushed: torch's distributed
    runtime sometimes aborts in C++ destructors at interpreter shutdown ("terminate called without an active
    exception", seen with gloo on torch 2.13 and 2.14 in about 1 run in 8), which would turn a finished run
    into a failed one. Every file the commands write is closed by then.
    """
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
