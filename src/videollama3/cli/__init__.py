"""The ``videollama3`` command line: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("videollama3.cli.chat", "answer a question about images / a video (interactive without a question)"),
    "convert": ("videollama3.cli.convert", "convert a checkpoint between the official and the transformers layout"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videollama3", description="VideoLLaMA3: image and video understanding")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(p)
        except ModuleNotFoundError as exc:  # a subcommand whose module is not written yet
            if exc.name != module_name:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import VideoLLaMA3Error

    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except VideoLLaMA3Error as exc:
        print(f"videollama3 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
