"""Training annotations in the official VideoLLaMA3 (LLaVA-style) format, read lazily.

One record per sample, in a JSON list or a JSONL file::

    {"image": "coco/1.jpg" | ["a.jpg", "b.jpg"], "video": ["clips/x.mp4"],
     "conversations": [{"from": "system", "value": "..."},
                       {"from": "human", "value": "<image>\\nWhat is this?"},
                       {"from": "gpt", "value": "A cat."}]}

Media paths are relative to a data folder. ``<image>`` / ``<video>`` tags in human turns mark where each
image / video goes, in order; they become content items of a conversation in the processor's format.
Streaming records (``"stream": true``, timed messages interleaved with video frames) are read by
:mod:`.streaming`. Records without media are text-only samples (trained as well: the official code drops them).

Unlike the official loader, nothing is repaired silently: a record whose tags do not match its media, whose
roles are out of order or whose text contains chat special tokens raises :class:`SampleError`, and the
training loop skips and counts it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoLLaMA3Error

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MEDIA_TAG = re.compile(r"(<image>|<video>)")
# Chat-template control tokens: in a sample's text they would forge message boundaries.
SPECIAL_TEXT = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|stream_start|>", "<|stream_end|>")


class SampleError(VideoLLaMA3Error, ValueError):
    """A training sample that cannot be used, with a short ``kind`` for the summary.

    Kinds: ``format`` (malformed record), ``tags`` (media and ``<image>``/``<video>`` tags disagree),
    ``missing_media``, ``corrupt_media``, ``too_long``, ``no_answer`` (nothing left to supervise).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class AnnotationFile:
    """Random access to the records of one annotation file without keeping Python objects per record.

    JSONL files are indexed by byte offset (records are read from disk on access); a JSON list is parsed
    once and kept as one compact byte buffer plus offsets. Both forms are cheap to hand to DataLoader worker
    processes (numpy arrays and bytes, pickled once per worker: not millions of dicts).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise SampleError("format", f"{self.path}: annotation file not found")
        self._blob: bytes | None = None
        self._lines: np.ndarray | None = None
        if self.path.suffix == ".jsonl":
            self.offsets = _line_offsets(self.path)
        else:
            self._blob, self.offsets = _pack_json_list(self.path)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def where(self, row: int) -> str:
        """Human-readable location of a record: ``file.jsonl:LINE`` or ``file.json[INDEX]``."""
        if self._blob is None:
            return f"{self.path.name}:{self.line_numbers()[row]}"
        return f"{self.path.name}[{row}]"

    def line_numbers(self) -> np.ndarray:
        """1-based line of every record of a JSONL file (read again on first use: only messages need it)."""
        if self._lines is None:
            with open(self.path, "rb") as f:
                self._lines = np.asarray([n for n, raw in enumerate(f, 1) if raw.strip()], dtype=np.int64)
        return self._lines

    def raw(self, row: int) -> bytes:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        if self._blob is not None:
            return self._blob[start:end]
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def __getitem__(self, row: int) -> dict:
        text = self.raw(row)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SampleError("format", f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise SampleError("format", f"a record must be a JSON object, got {type(record).__name__}")
        return record

    def __iter__(self) -> Iterator[dict]:
        for row in range(len(self)):
            yield self[row]


def _line_offsets(path: Path) -> np.ndarray:
    """Start offsets of the non-blank lines, plus the end of the last one."""
    starts, ends, offset = [], [], 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                starts.append(offset)
                ends.append(offset + len(line))
            offset += len(line)
    # Records are [starts[i], starts[i+1]); the last one ends at its own end.
    return np.asarray(starts + ends[-1:], dtype=np.int64) if starts else np.zeros(1, dtype=np.int64)


def _pack_json_list(path: Path) -> tuple[bytes, np.ndarray]:
    try:
        records = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise SampleError("format", f"{path}: invalid JSON ({exc})") from None
    if not isinstance(records, list):
        raise SampleError("format", f"{path}: a .json annotation file must hold a list of records")
    chunks = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in records]
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    return b"".join(chunks), offsets


# --------------------------------------------------------------------------------------------------
# Record -> conversation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaSettings:
    fps: float = 1.0
    max_frames: int = 180


def _as_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SampleError("format", f"{key!r} must be a path or a list of paths, got {value!r:.100}")


def record_media(record: dict, data_folder: str | os.PathLike | None) -> tuple[list[Path], list[Path]]:
    """(image paths, video paths) of a record, resolved against the data folder."""
    root = Path(data_folder) if data_folder is not None else None

    def resolve(p: str) -> Path:
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() or root is None else root / path

    images = [resolve(p) for p in _as_list(record.get("image"), "image")]
    videos = [resolve(p) for p in _as_list(record.get("video"), "video")]
    return images, videos


def record_to_conversation(
    record: dict, data_folder: str | os.PathLike | None, media: MediaSettings = MediaSettings()
) -> list[dict]:
    """Convert an official record into a conversation for :class:`VideoLLaMA3Processor`.

    ``<image>`` / ``<video>`` tags in human turns become image / video items in place, in order; the text
    between tags is stripped and kept when non-empty (as the official converter does). System turns become
    system messages. Raises :class:`SampleError` on anything inconsistent.
    """
    if record.get("stream") is True:
        raise SampleError("format", "a streaming record ('stream': true) is converted by training.streaming instead")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise SampleError("format", "'conversations' must be a non-empty list")
    images, videos = record_media(record, data_folder)
    image_iter, video_iter = iter(images), iter(videos)
    n_image_tags = n_video_tags = 0
    messages: list[dict] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise SampleError("format", f"turn {i}: expected {{'from': ..., 'value': ...}}, got {turn!r:.100}")
        role = ROLES.get(turn["from"])
        if role is None:
            raise SampleError("format", f"turn {i}: unknown speaker {turn['from']!r} (expected human, gpt or system)")
        value = turn["value"]
        if not isinstance(value, str):
            raise SampleError("format", f"turn {i}: 'value' must be a string, got {type(value).__name__}")
        for token in SPECIAL_TEXT:
            if token in value:
                raise SampleError("format", f"turn {i}: the text contains the chat control token {token!r}")
        if role != "user":
            if MEDIA_TAG.search(value):
                raise SampleError("tags", f"turn {i} ({turn['from']}): media tags are only allowed in human turns")
            if role == "system" and messages:
                raise SampleError("format", f"turn {i}: a system turn must come first")
            messages.append({"role": role, "content": value})
            continue
        content: list[dict] = []
        for part in MEDIA_TAG.split(value):
            if part == "<image>":
                n_image_tags += 1
                path = next(image_iter, None)
                if path is not None:
                    content.append({"type": "image", "image": {"image_path": str(path)}})
            elif part == "<video>":
                n_video_tags += 1
                path = next(video_iter, None)
                if path is not None:
                    video = {"video_path": str(path), "fps": media.fps, "max_frames": media.max_frames}
                    content.append({"type": "video", "video": video})
            elif part.strip():
                content.append({"type": "text", "text": part.strip()})
        messages.append({"role": "user", "content": content})
    if n_image_tags != len(images) or n_video_tags != len(videos):
        raise SampleError(
            "tags",
            f"{len(images)} image(s) and {len(videos)} video(s) but {n_image_tags} <image> and {n_video_tags} "
            "<video> tag(s) in the human turns",
        )
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if not roles or roles[0] != "user":
        raise SampleError("format", "the conversation must start with a human turn (after an optional system turn)")
    if any(a == b for a, b in zip(roles, roles[1:])):
        raise SampleError("format", "human and gpt turns must alternate")
    if "assistant" not in roles:
        raise SampleError("no_answer", "no gpt turn: nothing to train on")
    return messages


def check_media_exists(record: dict, data_folder: str | os.PathLike | None) -> None:
    """Raise ``SampleError("missing_media")`` naming the first media file that does not exist."""
    images, videos = record_media(record, data_folder)
    for path in images + videos:
        if not path.exists():
            raise SampleError("missing_media", f"{path}: no such file")
