"""VideoLLaMA3Processor: conversations in, model-ready tensors out.

The pipeline, per conversation (a *sample*):

1. Parse the conversation and *plan* every image (header only) and video (packet timestamps only): the
   number of frames, their timestamps and the frame size are known before any pixel is decoded.
2. Share the visual-token budget between all images and frames of the sample (``target_sizes``).
3. Decode: each image, and each kept video frame as soon as it is decoded, is resized, normalised and
   written straight into its rows of the preallocated ``pixel_values``. No list of full-size frames
   ever exists.
4. Differential Frame Pruner: the keep-mask of every merged visual token (``pruning.pruning_mask``).
5. Render the prompt (one ``<image>`` per image / frame), tokenize it, and expand each ``<image>`` to the
   number of merged tokens that the image / frame *keeps*.

Output layout follows the official release: one ``<image>`` token id per merged visual token, items in
prompt order, ``pixel_values`` rows in merge-block order.
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature

from ..errors import CheckpointError, ConversationError, MediaError
from ..pruning import DEFAULT_MIN_TOKENS as DEFAULT_COMPRESSION_MIN_TOKENS
from ..pruning import DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD
from ..pruning import item_pruning_mask
from .chat_template import IMAGE_TOKEN, content_kind, render_conversation
from .image import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_TOKENS,
    MAX_IMAGE_PIXELS,
    PATCH_SIZE,
    ImageReader,
    PixelNormalizer,
    resize,
    target_sizes,
    write_patches,
)
from .video import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    ProgressCallback,
    VideoPlan,
    VideoSampling,
    available_cores,
    decode_workers,
    plan_video,
)

PROCESSOR_CONFIG_NAME = "processor_config.json"
IMAGE_PROCESSOR_CONFIG_NAME = "preprocessor_config.json"
# The class names the released checkpoints' configs use; we answer to them without remote code.
OFFICIAL_PROCESSOR_CLASS = "Videollama3Qwen2Processor"
OFFICIAL_IMAGE_PROCESSOR_TYPE = "Videollama3ImageProcessor"

_VIDEO_KEYS = {"video_path", "path", "fps", "max_frames", "start_time", "end_time", "frames", "timestamps"}
_IMAGE_PATH_KEYS = ("image_path", "path")
# Keyword arguments of from_pretrained that only concern where files come from (or remote code).
_HUB_KWARGS = {
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "revision",
    "local_files_only",
    "subfolder",
    "trust_remote_code",
    "_from_auto",
    "_from_pipeline",
    "user_agent",
    "repo_type",
    "code_revision",
}


# --------------------------------------------------------------------------------------------------
# Image processor
# --------------------------------------------------------------------------------------------------


class VideoLLaMA3ImageProcessor:
    """Resize, normalise and patchify images and video frames (``preprocessor_config.json``).

    Args:
        patch_size: vision patch size (14).
        min_tokens: fewest merged tokens an image (per frame) is enlarged to (16).
        max_tokens: merged visual tokens of one sample, shared by all its images and frames (16384).
            Set ``image_processor.max_tokens`` to change the default budget.
        resample: Pillow filter (3 = bicubic).
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: pixel normalisation.
    """

    model_input_names = ["pixel_values", "grid_sizes", "merge_sizes"]

    def __init__(
        self,
        patch_size: int = PATCH_SIZE,
        min_tokens: int = DEFAULT_MIN_TOKENS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        resample: int = Image.Resampling.BICUBIC,
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        do_convert_rgb: bool = True,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        **kwargs: Any,
    ):
        self.patch_size = int(patch_size)
        self.min_tokens = int(min_tokens)
        self.max_tokens = int(max_tokens)
        self.resample = int(resample)
        self.do_resize = do_resize
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.do_convert_rgb = do_convert_rgb
        self.max_image_pixels = max_image_pixels
        # Other keys of the config file (auto_map, image_processor_type, ...) are kept for save_pretrained.
        self.extra_config = {k: v for k, v in kwargs.items() if not k.startswith("_")}

    # -- configuration -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> VideoLLaMA3ImageProcessor:
        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        folder = resolve_pretrained_folder(pretrained_model_name_or_path, **hub)
        config = _read_json(folder / IMAGE_PROCESSOR_CONFIG_NAME) or {}
        config.update(kwargs)
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra_config)
        out.setdefault("image_processor_type", OFFICIAL_IMAGE_PROCESSOR_TYPE)
        out.update(
            do_convert_rgb=self.do_convert_rgb,
            do_normalize=self.do_normalize,
            do_rescale=self.do_rescale,
            do_resize=self.do_resize,
            image_mean=self.image_mean,
            image_std=self.image_std,
            max_tokens=self.max_tokens,
            min_tokens=self.min_tokens,
            patch_size=self.patch_size,
            resample=self.resample,
            rescale_factor=self.rescale_factor,
        )
        return dict(sorted(out.items()))

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / IMAGE_PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict())})"

    # -- the pieces the processor uses ---------------------------------------------------------------

    def normalizer(self) -> PixelNormalizer:
        return PixelNormalizer(self.do_rescale, self.rescale_factor, self.do_normalize, self.image_mean, self.image_std)

    def target_sizes(
        self, items: Sequence[tuple[int, int, int]], merge_sizes: Sequence[int], max_tokens: int | None = None
    ) -> list[tuple[int, int]]:
        """(h, w) of every item of one sample; items are (num_frames, height, width). See ``image.target_sizes``."""
        if not self.do_resize:
            sizes = []
            for (_, height, width), m in zip(items, merge_sizes):
                factor = self.patch_size * m
                if height % factor or width % factor:
                    raise MediaError(
                        f"do_resize is off but a {width}x{height} image is not a multiple of {factor} (patch x merge)"
                    )
                sizes.append((height, width))
            return sizes
        return target_sizes(
            items,
            merge_sizes,
            patch_size=self.patch_size,
            min_tokens=self.min_tokens,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
        )

    def resize(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return resize(image, size, self.resample)

    # -- standalone use (in-memory images and videos) -------------------------------------------------

    def __call__(
        self,
        images: Any,
        merge_size: int | Sequence[int] = 1,
        max_tokens: int | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Process in-memory images / videos of one sample (the official image processor's interface).

        Args:
            images: one item or a list of items; an item is an image (PIL / uint8 array (H, W[, C])) or a
                video (a list of such frames, or a uint8 array (T, H, W, C)).
            merge_size: per item, or one for all (1 for images, 2 for videos in VideoLLaMA3).

        Returns:
            ``pixel_values`` (N, 3 * p * p) float32, ``grid_sizes`` (n_items, 3), ``merge_sizes`` (n_items,).
        """
        _check_return_tensors(return_tensors)
        items = _as_item_list(images)
        merges = list(merge_size) if isinstance(merge_size, Sequence) else [merge_size] * len(items)
        if len(merges) != len(items):
            raise ValueError(f"{len(items)} items but {len(merges)} merge sizes")
        readers = [[ImageReader(f) for f in item] for item in items]
        sizes = self.target_sizes([(len(r), r[0].height, r[0].width) for r in readers], merges, max_tokens)
        p = self.patch_size
        grid_sizes = [[len(r), h // p, w // p] for r, (h, w) in zip(readers, sizes)]
        pixel_values = torch.empty(sum(t * gh * gw for t, gh, gw in grid_sizes), 3 * p * p)
        normalizer = self.normalizer()
        row = 0
        for item_readers, m, size, (_, gh, gw) in zip(readers, merges, sizes, grid_sizes):
            for reader in item_readers:
                frame = self.resize(reader.read(), size)
                write_patches(pixel_values[row : row + gh * gw], frame, m, normalizer, p)
                row += gh * gw
        return BatchFeature(
            data={
                "pixel_values": pixel_values,
                "grid_sizes": torch.tensor(grid_sizes, dtype=torch.long),
                "merge_sizes": torch.tensor(merges, dtype=torch.long),
            }
        )

    preprocess = __call__


def _as_item_list(images: Any) -> list[list]:
    def is_frame(x):
        return isinstance(x, Image.Image) or (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim in (2, 3))

    def as_item(x):
        if is_frame(x):
            return [x]
        if isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 4:
            return list(x)
        if isinstance(x, (list, tuple)) and x and all(is_frame(f) for f in x):
            return list(x)
        raise MediaError(f"cannot read {type(x).__name__} as an image or a video")

    if is_frame(images) or (isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4):
        return [as_item(images)]
    if isinstance(images, (list, tuple)) and images:
        return [as_item(x) for x in images]
    raise MediaError("no images given")


# --------------------------------------------------------------------------------------------------
# Conversation parsing
# --------------------------------------------------------------------------------------------------


@dataclass
class _Item:
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
class _VideoGroup:
    """Video items sharing one file and sampling (trims aside): planned and decoded once."""

    plan: VideoPlan
    members: list[tuple[_Item, list[int]]] = field(default_factory=list)  # (item, indices into plan frames)


@dataclass
class _Sample:
    messages: list[dict]  # resolved for the chat template
    items: list[_Item]
    groups: list[_VideoGroup]


class _ConversationParser:
    """Turns a conversation into resolved messages and planned media items."""

    def __init__(self, processor: VideoLLaMA3Processor, media_root: Path | None):
        self.processor = processor
        self.media_root = media_root
        self.images: dict[str, ImageReader] = {}

    def parse(self, conversation: Any) -> _Sample:
        if not isinstance(conversation, (list, tuple)) or not conversation:
            raise ConversationError(
                f"a conversation must be a non-empty list of messages, got {type(conversation).__name__}"
            )
        messages: list[dict] = []
        items: list[_Item] = []
        pending_videos: list[tuple[_Item, dict, Any, VideoSampling, Any]] = []
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
                        _Item("image", self.processor.image_merge_size, reader.height, reader.width, 1, image=reader)
                    )
                    resolved = {"type": "image"}
                    if "timestamp" in item:
                        resolved["timestamp"] = item["timestamp"]
                    resolved_content.append(resolved)
                elif kind == "video":
                    source, sampling, timestamps = self._video_request(item.get("video"), where)
                    video_item = _Item("video", self.processor.video_merge_size, 0, 0, 0)
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
        return _Sample(messages, items, groups)

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
            path = next((value[k] for k in _IMAGE_PATH_KEYS if k in value), None)
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
        unknown = set(value) - _VIDEO_KEYS
        if unknown:
            raise ConversationError(f"{where}: unknown video option(s) {sorted(unknown)}; known: {sorted(_VIDEO_KEYS)}")
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

    def _plan_videos(self, pending) -> list[_VideoGroup]:
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
            group = _VideoGroup(plan)
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


# --------------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------------


class VideoLLaMA3Processor:
    """Conversation -> ``input_ids``, ``attention_mask``, ``pixel_values``, ``grid_sizes``, ``merge_sizes``,
    ``modals`` and ``compression_mask``, as the official VideoLLaMA3 processor (plus pruning and batching).

    Args:
        image_processor: a :class:`VideoLLaMA3ImageProcessor`.
        tokenizer: the Qwen2 tokenizer of the checkpoint (with ``<image>``).
        image_merge_size, video_merge_size: spatial merge of images (1) and of video frames (2).
        fps, max_frames: default video sampling (1 fps, at most 180 frames).
        use_token_compression: apply the Differential Frame Pruner (returned ids are then pruned).
        compression_threshold, compression_min_tokens: the pruner's parameters.
        progress: default progress callback ``(done, total)`` for video decoding.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(
        self,
        image_processor: VideoLLaMA3ImageProcessor | None = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        image_merge_size: int = 1,
        video_merge_size: int = 2,
        fps: float = DEFAULT_FPS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        use_token_compression: bool = True,
        compression_threshold: float = DEFAULT_COMPRESSION_THRESHOLD,
        compression_min_tokens: int = DEFAULT_COMPRESSION_MIN_TOKENS,
        image_token: str = IMAGE_TOKEN,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ):
        if tokenizer is None:
            raise CheckpointError("VideoLLaMA3Processor needs a tokenizer")
        self.image_processor = image_processor or VideoLLaMA3ImageProcessor()
        self.tokenizer = tokenizer
        self.chat_template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
        self.image_merge_size = int(image_merge_size)
        self.video_merge_size = int(video_merge_size)
        self.fps = fps
        self.max_frames = max_frames
        self.use_token_compression = use_token_compression
        self.compression_threshold = compression_threshold
        self.compression_min_tokens = compression_min_tokens
        self.image_token = image_token
        self.progress = progress
        self.extra_config = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if self.image_token_id is None or self.image_token_id == getattr(tokenizer, "unk_token_id", None):
            raise CheckpointError(f"the tokenizer has no {image_token!r} token")

    # -- loading and saving ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> VideoLLaMA3Processor:
        """Load from a checkpoint folder or a Hub model id (from the local cache first; never remote code).

        Reads the tokenizer, ``preprocessor_config.json`` and ``processor_config.json``; ``auto_map``
        entries are ignored. Keyword arguments override processor attributes (``fps``, ``max_frames``,
        ``use_token_compression``...) or image-processor ones (``max_tokens``, ``min_tokens``...).
        """
        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        folder = resolve_pretrained_folder(pretrained_model_name_or_path, **hub)
        processor_config = _read_json(folder / PROCESSOR_CONFIG_NAME) or {}
        processor_config.pop("processor_class", None)
        processor_config.pop("auto_map", None)
        model_config = _read_json(folder / "config.json") or {}
        if "use_token_compression" in model_config:
            processor_config.setdefault("use_token_compression", bool(model_config["use_token_compression"]))
        image_keys = set(_read_json(folder / IMAGE_PROCESSOR_CONFIG_NAME) or {}) | {
            "patch_size",
            "min_tokens",
            "max_tokens",
            "resample",
            "image_mean",
            "image_std",
            "max_image_pixels",
        }
        image_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in image_keys}
        image_processor = VideoLLaMA3ImageProcessor.from_pretrained(folder, **image_overrides)
        tokenizer = _load_tokenizer(folder)
        processor_config.update(kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer, **processor_config)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra_config)
        out.update(
            processor_class=OFFICIAL_PROCESSOR_CLASS,
            image_merge_size=self.image_merge_size,
            video_merge_size=self.video_merge_size,
            fps=self.fps,
            max_frames=self.max_frames,
        )
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``processor_config.json``, ``preprocessor_config.json`` and the tokenizer files."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.image_processor.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_processor={self.image_processor!r}, tokenizer={type(self.tokenizer).__name__}, "
            f"config={json.dumps(self.to_dict())}, use_token_compression={self.use_token_compression})"
        )

    @property
    def model_input_names(self) -> list[str]:
        return [
            "input_ids",
            "attention_mask",
            "pixel_values",
            "grid_sizes",
            "merge_sizes",
            "modals",
            "compression_mask",
        ]

    # -- text ------------------------------------------------------------------------------------------

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]],
        add_system_prompt: bool = False,
        add_generation_prompt: bool = False,
        media_root: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt string of a conversation (one ``<image>`` per image and per video frame).

        Videos are planned (their frame timestamps read from the container) but not decoded.
        """
        if kwargs.pop("tokenize", False):
            raise ValueError("apply_chat_template returns the prompt string; call the processor for token ids")
        kwargs.pop("chat_template", None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        sample = _ConversationParser(self, _as_root(media_root)).parse(conversation)
        return self._render(sample, add_system_prompt, add_generation_prompt)

    def _render(self, sample: _Sample, add_system_prompt: bool, add_generation_prompt: bool) -> str:
        return render_conversation(
            sample.messages,
            add_system_prompt=add_system_prompt,
            add_generation_prompt=add_generation_prompt,
            image_token=self.image_token,
        )

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # -- the main call --------------------------------------------------------------------------------

    def __call__(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]] | None = None,
        *,
        add_system_prompt: bool = False,
        add_generation_prompt: bool = False,
        return_tensors: str | None = "pt",
        max_tokens: int | None = None,
        prune: bool | None = None,
        progress: ProgressCallback | None = None,
        media_root: str | os.PathLike | None = None,
    ) -> BatchFeature:
        """Process one conversation, or a list of conversations (a left-padded batch).

        Args:
            conversation: messages ``{"role": ..., "content": ...}``; content is a string or a list of
                strings and items ``{"type": "text", "text": ...}``, ``{"type": "image", "image":
                {"image_path": ...} | path | PIL image | uint8 array}``, ``{"type": "video", "video":
                {"video_path": ..., "fps", "max_frames", "start_time", "end_time"} | {"frames": [...],
                "timestamps": [...]}}``. Roles: system, user, assistant, stream.
            add_system_prompt: prepend the default VideoLLaMA3 system message if there is none.
            add_generation_prompt: end with the assistant header, ready for generation.
            max_tokens: visual-token budget of each sample (default ``image_processor.max_tokens``).
            prune: apply the Differential Frame Pruner to the returned ids (default
                ``use_token_compression``); with False every visual token is kept.
            progress: ``(done, total)`` callback while videos decode.
            media_root: folder that relative media paths are relative to (default: the working directory).

        Returns:
            ``input_ids`` / ``attention_mask`` (B, L) int64; with visual input also ``pixel_values``
            (N, 3 * 14 * 14) float32, ``grid_sizes`` (n_items, 3) and ``merge_sizes`` (n_items,) int64,
            ``compression_mask`` (n_tokens,) bool (one per merged visual token of all items in order,
            True = kept); ``modals``: "image" / "video" per item (empty without visual input).
        """
        _check_return_tensors(return_tensors)
        if conversation is None:
            raise ConversationError("no conversation given")
        batched = (
            isinstance(conversation, (list, tuple))
            and len(conversation) > 0
            and isinstance(conversation[0], (list, tuple))
        )
        conversations = list(conversation) if batched else [conversation]
        prune = self.use_token_compression if prune is None else prune
        progress = progress if progress is not None else self.progress
        root = _as_root(media_root)

        # 1. Parse and plan (headers and packet timestamps only).
        samples = [_ConversationParser(self, root).parse(conv) for conv in conversations]

        # 2. Budget: sizes per sample, then the rows of every item in the packed pixel_values.
        p = self.image_processor.patch_size
        rows = 0
        for sample in samples:
            sizes = self.image_processor.target_sizes(
                [(it.num_frames, it.height, it.width) for it in sample.items],
                [it.merge_size for it in sample.items],
                max_tokens,
            )
            for item, size in zip(sample.items, sizes):
                item.size = size
                item.row_offset = rows
                t, gh, gw = item.grid(p)
                rows += t * gh * gw
        items = [item for sample in samples for item in sample.items]

        # 3. Decode straight into pixel_values. Zeroed rather than empty: its pages are then mapped here, in
        # one thread, instead of on first write by the resize threads, where each page fault waits on the
        # address-space lock behind the decoders' frame allocations (0.5 s of a 1.5 s call on a 2-core VM).
        pixel_values = torch.zeros(rows, 3 * p * p, dtype=torch.float32)
        normalize = self.image_processor.normalizer()
        for sample in samples:
            self._fill(pixel_values, sample, normalize, progress)

        # 4. Differential Frame Pruner keep-mask, one entry per merged token.
        grid_sizes = torch.tensor([item.grid(p) for item in items], dtype=torch.long).reshape(-1, 3)
        merge_sizes = torch.tensor([item.merge_size for item in items], dtype=torch.long)
        if prune:
            keep = self.compression_mask(pixel_values, grid_sizes, merge_sizes)
        else:
            tokens = sum(t * (h // m) * (w // m) for (t, h, w), m in zip(grid_sizes.tolist(), merge_sizes.tolist()))
            keep = torch.ones(tokens, dtype=torch.bool)

        # 5. Prompts -> ids, each <image> expanded to the tokens its image / frame keeps.
        kept_per_placeholder = _kept_per_frame(keep, grid_sizes, merge_sizes)
        sequences, cursor = [], 0
        for sample in samples:
            prompt = self._render(sample, add_system_prompt, add_generation_prompt)
            n_frames = sum(item.num_frames for item in sample.items)
            sequences.append(self._expand(prompt, kept_per_placeholder[cursor : cursor + n_frames]))
            cursor += n_frames
        input_ids, attention_mask = self._pad_left(sequences)

        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if items:
            data.update(
                pixel_values=pixel_values,
                grid_sizes=grid_sizes,
                merge_sizes=merge_sizes,
                modals=[item.modal for item in items],
                compression_mask=keep,
            )
        else:
            data["modals"] = []  # as the reference: no visual item (its "text" modal marks dummy training images)
        return BatchFeature(data=data)

    def compression_mask(
        self,
        pixel_values: torch.Tensor,
        grid_sizes: torch.Tensor,
        merge_sizes: torch.Tensor,
        frames_per_chunk: int = 8,
    ) -> torch.Tensor:
        """The Differential Frame Pruner's keep-mask (``pruning.item_pruning_mask``), one bool per merged token.

        Computed a few frames at a time: a frame's mask depends only on it and on the previous frame, so
        chunks overlapping by one frame give exactly the whole-video mask without its full-size temporaries.
        """
        masks, row = [], 0
        for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
            per_frame = gh * gw
            for first in range(0, t, frames_per_chunk):
                last = min(first + frames_per_chunk, t)
                lead = 1 if first > 0 else 0  # the previous frame, to difference against
                rows = pixel_values[row + (first - lead) * per_frame : row + last * per_frame]
                mask = item_pruning_mask(
                    rows, (last - first + lead, gh, gw), m, self.compression_threshold, self.compression_min_tokens
                )
                masks.append(mask[lead * (per_frame // (m * m)) :])
            row += t * per_frame
        if row != pixel_values.shape[0]:
            raise AssertionError("grid_sizes do not describe pixel_values")
        return torch.cat(masks) if masks else torch.ones(0, dtype=torch.bool)

    def _fill(self, out: torch.Tensor, sample: _Sample, normalize: PixelNormalizer, progress) -> None:
        """Decode, resize, normalise and patchify every item of a sample into its rows of ``out``."""
        p = self.image_processor.patch_size
        resample = self.image_processor.resample
        for item in sample.items:
            if item.modal == "image":
                _, gh, gw = item.grid(p)
                frame = resize(item.image.read(), item.size, resample)
                write_patches(out[item.row_offset : item.row_offset + gh * gw], frame, item.merge_size, normalize, p)
        for group in sample.groups:
            # Frames of the plan that some member shows -> (member, frame index within the member).
            destinations: dict[int, list[tuple[_Item, int]]] = {}
            for item, indices in group.members:
                for j, k in enumerate(indices):
                    destinations.setdefault(k, []).append((item, j))
            needed = sorted(destinations)
            plan = group.plan
            size = group.members[0][0].size
            sub = VideoPlan(plan.name, plan.height, plan.width, [], [plan.keys[k] for k in needed], plan.source)

            # Frames are resized as soon as they are decoded (full-size frames never pile up), by a few
            # threads: Pillow and NumPy release the GIL, so resizing uses the cores decoding leaves idle.
            targets = [destinations[k] for k in needed]
            place = functools.partial(self._write_frame, out, targets, size, normalize)
            streams = sub.frame_streams(progress, decode_workers())
            _parallel_map(place, _prefetched(*streams), resize_threads())

    def _write_frame(
        self,
        out: torch.Tensor,
        targets: list[list[tuple[_Item, int]]],
        size: tuple[int, int],
        normalize: PixelNormalizer,
        position: int,
        frame: np.ndarray,
    ) -> None:
        """Resize decoded frame ``position`` of a video group and write it into every (item, frame) using it."""
        p = self.image_processor.patch_size
        frame = resize(frame, size, self.image_processor.resample)
        for item, j in targets[position]:
            if item.size != size:
                raise AssertionError("items of one video group must share their size")
            _, gh, gw = item.grid(p)
            start = item.row_offset + j * gh * gw
            write_patches(out[start : start + gh * gw], frame, item.merge_size, normalize, p)

    def _expand(self, prompt: str, counts: list[int]) -> list[int]:
        """Tokenize a prompt and repeat its j-th ``<image>`` id ``counts[j]`` times.

        ``<image>`` is an added token, so tokenizing the prompt with one ``<image>`` per frame and then
        repeating the id gives exactly the ids of the prompt with the repeated placeholders.
        """
        ids = self.tokenizer(prompt)["input_ids"]
        placeholders = sum(1 for i in ids if i == self.image_token_id)
        if placeholders != len(counts):
            raise ConversationError(
                f"the prompt has {placeholders} {self.image_token} placeholders but the conversation carries "
                f"{len(counts)} images / video frames"
            )
        out: list[int] = []
        j = 0
        for token in ids:
            if token == self.image_token_id:
                out.extend([token] * counts[j])
                j += 1
            else:
                out.append(token)
        return out

    def _pad_left(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for b, seq in enumerate(sequences):
            if seq:
                input_ids[b, length - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                attention_mask[b, length - len(seq) :] = 1
        return input_ids, attention_mask


class Videollama3Qwen2Processor(VideoLLaMA3Processor):
    """The official processor's class name (``processor_config.json``), so that ``AutoProcessor`` finds us."""


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _kept_per_frame(keep: torch.Tensor, grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> list[int]:
    """Kept merged tokens of every image / frame, in order (one entry per ``<image>`` placeholder)."""
    counts: list[int] = []
    start = 0
    for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
        per_frame = (gh // m) * (gw // m)
        counts.extend(keep[start : start + t * per_frame].view(t, per_frame).sum(dim=1).tolist())
        start += t * per_frame
    return counts


def resize_threads() -> int:
    """Threads resizing decoded frames: one per core; ``VIDEOLLAMA3_RESIZE_THREADS`` overrides."""
    override = os.environ.get("VIDEOLLAMA3_RESIZE_THREADS")
    if override:
        return max(int(override), 1)
    return available_cores()


def _parallel_map(function, items: Iterator[tuple[int, Any]], threads: int) -> None:
    """``function(*item)`` for every item on ``threads`` threads, at most ``2 * threads`` items in flight
    (each holds a full-size frame). The first error is raised once the items in flight have finished."""
    if threads <= 1:
        for item in items:
            function(*item)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="videollama3-resize") as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, *item))
                while len(pending) >= 2 * threads:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _prefetched(*iterators: Iterator, depth: int = 2) -> Iterator:
    """Run each iterator in a background thread, together at most ``depth`` items ahead; yield their items
    as they come (in order within an iterator, interleaved across them).

    Decoding (libavcodec) and resizing (Pillow) both release the GIL, so the next frames decode while
    this one is resized; the bounded queue keeps at most ``depth + 2`` full-size frames per iterator alive.
    The first error of any iterator is raised here, after the others have been stopped.
    """
    q: queue.Queue = queue.Queue(maxsize=depth * len(iterators))
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():  # the consumer may have gone away (an error, or it stopped early)
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))

    threads = [threading.Thread(target=work, args=(it,), name="videollama3-decode", daemon=True) for it in iterators]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for iterator in iterators:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # the worker has returned: closing the generator closes the video file now


def _check_return_tensors(return_tensors: str | None) -> None:
    if return_tensors not in (None, "pt"):
        raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")


def _as_root(media_root: str | os.PathLike | None) -> Path | None:
    return None if media_root is None else Path(media_root)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from exc


def resolve_pretrained_folder(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    subfolder: str | None = None,
    **_: Any,
) -> Path:
    """A local folder for a checkpoint folder or a Hub model id.

    Hub ids resolve from the Hugging Face cache first and are downloaded (processor files only) when
    missing, unless ``local_files_only`` (or ``HF_HUB_OFFLINE``) is set.
    """
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return path / subfolder if subfolder else path
    name = str(name_or_path)
    if name.count("/") != 1 or path.exists():
        raise CheckpointError(f"{name}: no such folder, and not a Hugging Face Hub model id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    patterns = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
    if subfolder:
        patterns = [f"{subfolder}/{p}" for p in patterns]
    kwargs = dict(repo_id=name, revision=revision, cache_dir=cache_dir, allow_patterns=patterns, token=token)
    try:
        folder = Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, HFValidationError) as exc:
        if local_files_only or isinstance(exc, HFValidationError):
            raise CheckpointError(f"{name}: not in the local Hugging Face cache ({exc})") from exc
        try:
            folder = Path(snapshot_download(**kwargs))
        except Exception as download_exc:  # network, auth, missing repo: one clear message
            raise CheckpointError(f"{name}: cannot download the processor files ({download_exc})") from download_exc
    return folder / subfolder if subfolder else folder


def _load_tokenizer(folder: Path):
    """The checkpoint's tokenizer, by the class its config names, never through remote code."""
    import transformers

    config = _read_json(folder / "tokenizer_config.json") or {}
    name = config.get("tokenizer_class") or ""
    cls = getattr(transformers, name, None) or getattr(transformers, name.removesuffix("Fast"), None)
    try:
        if cls is not None:
            return cls.from_pretrained(folder)
        return transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from exc
