"""Checking annotation files before a run (``videollama3 data check``).

Two depths:

- without a processor: the record's structure, its ``<image>`` / ``<video>`` tags against its media, and
  that every media file exists and opens (image header, video container and packet timestamps), without
  decoding pixels; for a streaming record (:mod:`.streaming`), its timed messages (roles, ``time`` present,
  not decreasing and within [start_time, end_time]), its one video, and that a sampled frame precedes a
  message;
- with a processor (a checkpoint folder): the exact training path of :class:`SupervisedDataset`, i.e.
  decoding, the visual budget, tokenization, labels and the length limit.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

from ..errors import ConversationError, MediaError, MediaNotFoundError
from .annotations import (
    AnnotationFile,
    MediaSettings,
    SampleError,
    check_media_exists,
    record_media,
    record_to_conversation,
)
from .data import BadSample, Sample, SkipLog, Source, SupervisedDataset
from .recipe import DataConfig
from .streaming import is_stream_record, parse_stream_record, plan_stream


def _modality(record: dict) -> str:
    if record.get("stream") is True:
        return "stream"
    images, videos = record_media(record, None)
    if videos:
        return "video"
    if len(images) > 1:
        return "multi-image"
    return "image" if images else "text-only"


def check_record(record: dict, source: Source, config: DataConfig) -> None:
    """Raise :class:`SampleError` if the record cannot be trained on (structure, tags, media headers)."""
    from ..processing import ImageReader, VideoSampling, plan_video

    if is_stream_record(record):
        stream = parse_stream_record(record, source.data_folder)
        check_media_exists(record, source.data_folder)
        images, videos = [], []
    else:
        stream = None
        record_to_conversation(record, source.data_folder, MediaSettings(config.fps, config.max_frames))
        check_media_exists(record, source.data_folder)
        images, videos = record_media(record, source.data_folder)
    try:
        for path in images:
            ImageReader(path)
        for path in videos:
            plan_video(path, VideoSampling(config.fps, config.max_frames))
        if stream is not None:  # the frames it samples, and that at least one of them comes before a message
            plan_stream(stream, config.fps, config.max_frames)
    except MediaNotFoundError as exc:
        raise SampleError("missing_media", str(exc)) from None
    except (MediaError, ConversationError) as exc:
        raise SampleError("corrupt_media", str(exc)) from None
    except Exception as exc:  # a container PyAV cannot parse
        raise SampleError("corrupt_media", f"{type(exc).__name__}: {exc}") from None


def check_file(
    source: Source,
    config: DataConfig,
    processor_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    verbose: bool = True,
    out: Callable[[str], None] = print,
) -> tuple[SkipLog, str]:
    """Check every record of one annotation file; print each problem; return the log and a stats line."""
    log = SkipLog(keep_examples=3)
    modalities: Counter[str] = Counter()
    lengths: list[int] = []
    truncated = 0
    try:
        annotations = AnnotationFile(source.path)
    except SampleError as exc:
        log.seen += 1
        log.add(BadSample(-1, str(source.path), exc.kind, str(exc)))
        if verbose:
            out(f"{source.path} [{exc.kind}] {exc}")
        return log, "unreadable"
    dataset = SupervisedDataset([source], processor_dir, config) if processor_dir is not None else None
    count = len(annotations) if limit is None else min(limit, len(annotations))
    for row in range(count):
        log.seen += 1
        where = annotations.where(row)
        if dataset is not None:
            result = dataset[row]
        else:
            try:
                record = annotations[row]
                check_record(record, source, config)
                result = None
            except SampleError as exc:
                result = BadSample(row, where, exc.kind, str(exc))
        if isinstance(result, BadSample):
            log.add(result)
            if verbose:
                out(f"{where} [{result.kind}] {result.message}")
            continue
        if isinstance(result, Sample):
            lengths.append(result.length)
            truncated += result.truncated
        modalities[_modality(annotations[row])] += 1
    stats = ", ".join(f"{n} {kind}" for kind, n in sorted(modalities.items()))
    if lengths:
        stats += f"; tokens mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}; {truncated} truncated"
    return log, stats or "no usable sample"
