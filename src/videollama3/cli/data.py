"""``videollama3 data check|preview``: validate training annotations before a run, inspect labels.

``check`` reads every record and prints what is wrong, sample by sample (``file:line [kind] reason``), then
a summary; it exits with status 1 when a sample is unusable. Without ``--processor`` it checks structure,
tags and that media files exist and open (image headers, video containers); with ``--processor CKPT`` it
runs each sample through the exact training path (decoding, visual budget, tokenization, labels, length).
Streaming records (``"stream": true``, docs/streaming.md) are checked too: their timed messages (role, ``time``
present, not decreasing, within [start_time, end_time]), their one video, and that a frame precedes a message.

``preview`` prints one processed sample with its supervised tokens marked ``[[...]]``.
"""

from __future__ import annotations

import argparse


def _processing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-folder", default=None, help="folder media paths are relative to (default: the file's folder)"
    )
    parser.add_argument("--processor", default=None, help="checkpoint folder with the tokenizer / processor files")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max-frames", type=int, default=180)
    parser.add_argument("--model-max-length", type=int, default=16384)
    parser.add_argument("--mm-max-length", type=int, default=10240, help="visual-token budget per sample")
    parser.add_argument("--image-merge-size", type=int, default=1)
    parser.add_argument("--video-merge-size", type=int, default=2)
    parser.add_argument("--prune", action="store_true", help="apply the Differential Frame Pruner (stages 3-4)")
    parser.add_argument("--system-prompt", action="store_true", help="add the default system prompt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser("check", help="validate annotation files sample by sample")
    check.add_argument("annotations", nargs="+", help="annotation files (.json list or .jsonl)")
    _processing_arguments(check)
    check.add_argument("--limit", type=int, default=None, help="check only the first N samples of each file")
    check.add_argument("--quiet", action="store_true", help="print only the summary")
    preview = sub.add_parser("preview", help="show a processed sample with its supervised tokens marked")
    preview.add_argument("annotation", help="annotation file")
    preview.add_argument("index", type=int, nargs="?", default=0, help="record index (0-based)")
    _processing_arguments(preview)


def _config(args: argparse.Namespace, path: str):
    from ..training.recipe import DataConfig, SourceConfig

    return DataConfig(
        sources=[SourceConfig(path=path, data_folder=args.data_folder)],
        model_max_length=args.model_max_length,
        mm_max_length=args.mm_max_length,
        fps=args.fps,
        max_frames=args.max_frames,
        image_merge_size=args.image_merge_size,
        video_merge_size=args.video_merge_size,
        use_token_compression=args.prune,
        add_system_prompt=args.system_prompt,
    )


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        return _check(args)
    return _preview(args)


def _check(args: argparse.Namespace) -> int:
    from ..training.data import SkipLog, resolve_sources
    from ..training.validation import check_file

    total = SkipLog(keep_examples=3)
    for path in args.annotations:
        config = _config(args, path)
        (source,) = resolve_sources(config)
        log, stats = check_file(source, config, processor_dir=args.processor, limit=args.limit, verbose=not args.quiet)
        print(f"{path}: {log.seen} samples, {log.skipped} unusable; {stats}")
        total.merge(log)
    print(total.summary())
    return 1 if total.skipped else 0


def _preview(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..training.data import SupervisedDataset, resolve_sources
    from ..training.labels import IGNORE_INDEX

    if args.processor is None:
        raise ConfigError("preview needs --processor (a checkpoint folder with the tokenizer)")
    config = _config(args, args.annotation)
    dataset = SupervisedDataset(resolve_sources(config), args.processor, config)
    sample = dataset.load(args.index)
    tokenizer = dataset.processor.tokenizer
    image_id = dataset.processor.image_token_id
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    out, i = [], 0
    while i < len(ids):  # runs of equal supervision; runs of <image> shown as a count
        j = i
        supervised = labels[i] != IGNORE_INDEX
        if ids[i] == image_id:
            while j < len(ids) and ids[j] == image_id:
                j += 1
            out.append(f"<image x{j - i}>")
        else:
            while j < len(ids) and ids[j] != image_id and (labels[j] != IGNORE_INDEX) == supervised:
                j += 1
            text = tokenizer.decode(ids[i:j])
            out.append(f"[[{text}]]" if supervised else text)
        i = j
    print("".join(out))
    print(
        f"\n{sample.length} tokens, {sample.num_targets} supervised, {sample.num_patches} patches"
        + (", truncated" if sample.truncated else "")
    )
    return 0
