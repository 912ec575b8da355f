"""Conversations: checking a conversation and turning it into messages for the chat template and planned
media items (every image opened, every video's frames chosen), before any pixel is decoded.

A conversation is a list of messages ``{"role": ..., "content": ...}``; content is a string or a list of
strings and ``{"type": "text" | "image" | "video", ...}`` items (see ``VideoLLaMA3Processor.__call__``).
Mistakes raise a :class:`ConversationError` naming the message and the item.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConversationError, MediaError
from .chat_template import content_kind
from .image import ImageReader
from .video import VideoPlan, VideoSampling, plan_video

if TYPE_CHECKING:
    from .processor import VideoLLaMA3Processor

VIDEO_KEYS = {"video_path", "path", "fps", "max_frames", "start_time", "end_time", "frames", "timestamps"}
IMAGE_PATH_KEYS = ("image_path", "path")


@dataclass
class MediaItem:
    """One image or one video of a sample, and where its patches go."""

    modal: str  # "image" | "video"
    merge_size: int
    height: int  # of the (first) frame, before resizing
    width: int
    num_frames: int
    image: ImageReader | None = None
    plan: VideoPlan | None = None
    size: tuple[int, int] = (0, 0)  # resized (h, w)
    row_offset: int = 0  # first row in pixel_values

    def grid(self, patch_size: int) -> tuple[int, int, int]:
        return self.num_frames, self.size[0] // patch_size, self.size[1] // patch_size


@dataclass
class VideoGroup:
    """Video items sharing one file and sampling (trims aside): planned and decoded once."""

    plan: VideoPlan
    members: list[tuple[MediaItem, list[int]]] = field(default_factory=list)  # (item, indices into plan frames)


@dataclass
class ParsedConversation:
    """One conversation (a *sample* of a batch): its messages, and its images and videos in prompt order."""

    messages: list[dict]  # resolved for the chat template
    items: list[MediaItem]
    groups: list[VideoGroup]


class ConversationParser:
    """Turns a conversation into resolved messages and planned media items, with the processor's settings
    (merge sizes, default video sampling, the ``<image>`` token). Relative media paths are taken from
    ``media_root`` (default: the working directory)."""

    def __init__(self, processor: VideoLLaMA3Processor, media_root: Path | None):
        self.processor = processor
        self.media_root = media_root
        self.images: dict[str, ImageReader] = {}

    def parse(self, conversation: Any) -> ParsedConversation:
        if not isinstance(conversation, (list, tuple)) or not conversation:
            raise ConversationError(
                f"a conversation must be a non-empty list of messages, got {type(conversation).__name__}"
            )
        messages: list[dict] = []
        items: list[MediaItem] = []
        pending_videos: list[tuple[MediaItem, dict, Any, VideoSampling, Any]] = []
        for m, message in enumerate(conversation):
            if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
                raise ConversationError(f"message {m}: expected a dict with 'role' and 'content', got {message!r:.200}")
            role, content = message["role"], message["content"]
            if not isinstance(role, str) or not role:
                raise ConversationError(f"message {m}: the role must be a non-empty string, got {role!r}")
            if isinstance(content, str):
                self._check_text(content, f"message {m} ({role})")
                messages.append({"role": role, "content": content})
                continue
            if not isinstance(content, (list, tuple)):
                raise ConversationError(
                    f"message {m} ({role}): content must be a string or a list of items, got {type(content).__name__}"
                )
            resolved_content: list = []
            for c, item in enumerate(content):
                where = f"message {m} ({role}), item {c}"
                kind = content_kind(item)
                if kind == "string":
                    self._check_text(item, where)
                    resolved_content.append(item)
                elif kind == "text":
                    text = item["text"]
                    if not isinstance(text, str):
                        raise ConversationError(f"{where}: 'text' must be a string, got {type(text).__name__}")
                    self._check_text(text, where)
                    resolved_content.append({"type": "text", "text": text})
                elif kind == "image":
                    reader = self._image(item.get("image"), where)
                    items.append(
                        MediaItem(
                            "image", self.processor.image_merge_size, reader.height, reader.width, 1, image=reader
                        )
                    )
                    resolved = {"type": "image"}
                    if "timestamp" in item:
                        resolved["timestamp"] = item["timestamp"]
                    resolved_content.append(resolved)
                elif kind == "video":
                    source, sampling, timestamps = self._video_request(item.get("video"), where)
                    video_item = MediaItem("video", self.processor.video_merge_size, 0, 0, 0)
                    items.append(video_item)
                    resolved = {"type": "video"}
                    resolved_content.append(resolved)
                    pending_videos.append((video_item, resolved, source, sampling, timestamps))
                else:
                    kind_name = item.get("type") if isinstance(item, Mapping) else type(item).__name__
                    raise ConversationError(
                        f"{where}: unknown content type {kind_name!r} (expected 'text', 'image' or 'video')"
                    )
            messages.append({"role": role, "content": resolved_content})
        groups = self._plan_videos(pending_videos)
        return ParsedConversation(messages, items, groups)

    # -- text -----------------------------------------------------------------------------------------

    def _check_text(self, text: str, where: str) -> None:
        token = self.processor.image_token
        if token in text:
            raise ConversationError(
                f"{where}: the text contains {token!r}, which would refer to an image the message does not carry; "
                "give images as {'type': 'image', 'image': ...} items instead"
            )

    # -- images ---------------------------------------------------------------------------------------

    def _image(self, value: Any, where: str) -> ImageReader:
        if value is None:
            raise ConversationError(f"{where}: an image item without an image (expected {{'image_path': ...}})")
        if isinstance(value, Mapping):
            path = next((value[k] for k in IMAGE_PATH_KEYS if k in value), None)
            if path is None:
                raise ConversationError(f"{where}: an image dict needs 'image_path', got keys {sorted(value)}")
            value = path
        if isinstance(value, (str, os.PathLike)):
            path = self._resolve(value)
            key = str(path)
            if key not in self.images:  # an image used twice is decoded once
                self.images[key] = ImageReader(path, max_pixels=self.processor.image_processor.max_image_pixels)
            return self.images[key]
        return ImageReader(value)

    def _resolve(self, path: str | os.PathLike) -> Path:
        path = Path(os.path.expanduser(str(path)))
        if not path.is_absolute() and self.media_root is not None:
            path = self.media_root / path
        return path

    # -- videos ---------------------------------------------------------------------------------------

    def _video_request(self, value: Any, where: str) -> tuple[Any, VideoSampling, Any]:
        """(source: Path or list of frames, sampling, timestamps of a frame list)."""
        p = self.processor
        if value is None:
            raise ConversationError(f"{where}: a video item without a video (expected {{'video_path': ...}})")
        if isinstance(value, (str, os.PathLike)):
            return self._resolve(value), VideoSampling(p.fps, p.max_frames), None
        if isinstance(value, (list, tuple)):
            return list(value), VideoSampling(p.fps, p.max_frames), None
        if not isinstance(value, Mapping):
            raise ConversationError(
                f"{where}: a video must be a dict, a path or a list of frames, got {type(value).__name__}"
            )
        unknown = set(value) - VIDEO_KEYS
        if unknown:
            raise ConversationError(f"{where}: unknown video option(s) {sorted(unknown)}; known: {sorted(VIDEO_KEYS)}")
        fps = value.get("fps")
        max_frames = value.get("max_frames")
        sampling = VideoSampling(
            p.fps if fps is None else fps,
            p.max_frames if max_frames is None else max_frames,
            value.get("start_time"),
            value.get("end_time"),
        )
        if "frames" in value:
            frames = value["frames"]
            if not isinstance(frames, (list, tuple)):
                raise ConversationError(f"{where}: 'frames' must be a list of images")
            return list(frames), sampling, value.get("timestamps")
        path = value.get("video_path", value.get("path"))
        if path is None:
            raise ConversationError(f"{where}: a video dict needs 'video_path' (or 'frames'), got keys {sorted(value)}")
        return self._resolve(path), sampling, None

    def _plan_videos(self, pending) -> list[VideoGroup]:
        """Plan the videos; several items on one file with one sampling (trims aside) share a plan.

        As the reference does, such a group is sampled once over the union of its trims and each item
        keeps the frames with ``start <= t <= end``.
        """
        grouped: dict[tuple, list] = {}
        for entry in pending:
            item, _, source, sampling, _ = entry
            name = str(source) if isinstance(source, Path) else "<frames>"
            sampling.validate(name)
            key = (
                ("path", str(source), sampling.fps, sampling.max_frames)
                if isinstance(source, Path)
                else ("list", id(item))
            )
            grouped.setdefault(key, []).append(entry)

        groups = []
        for entries in grouped.values():
            _, _, source, sampling, timestamps = entries[0]
            starts = [0.0 if e[3].start_time is None else e[3].start_time for e in entries]
            ends = [math.inf if e[3].end_time is None else e[3].end_time for e in entries]
            if isinstance(source, Path):
                start, end = min(starts), max(ends)
                union = VideoSampling(
                    sampling.fps, sampling.max_frames, start if start > 0 else None, end if end < math.inf else None
                )
                plan = plan_video(source, union)
            else:
                plan = plan_video(source, sampling, timestamps=timestamps)
                if len(plan.timestamps) == 0:  # a frame list without timestamps: no "Time" labels, no trimming
                    starts, ends = [-math.inf], [math.inf]
            group = VideoGroup(plan)
            for (item, resolved, *_), start, end in zip(entries, starts, ends):
                if plan.timestamps:
                    indices = [k for k, t in enumerate(plan.timestamps) if start <= t <= end]
                else:
                    indices = list(range(len(plan.keys)))
                if not indices:
                    raise MediaError(f"{plan.name}: no sampled frame between {start} s and {end} s")
                item.num_frames = len(indices)
                item.height, item.width = plan.height, plan.width
                item.plan = plan
                resolved["num_frames"] = len(indices)
                if plan.timestamps:
                    resolved["timestamps"] = [plan.timestamps[k] for k in indices]
                group.members.append((item, indices))
            groups.append(group)
        return groups
