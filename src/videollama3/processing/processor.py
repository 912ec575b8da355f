"""VideoLLaMA3Processor: conversations in, model-ready tensors out.

The pipeline, per conversation (a *sample*):

1. Parse the conversation and *plan* every image (header only) and video (packet timestamps only): the
   number of frames, their timestamps and the frame size are known before any pixel is decoded
   (:mod:`.conversation`, :mod:`.video`).
2. Share the visual-token budget between all images and frames of the sample
   (``VideoLLaMA3ImageProcessor.target_sizes``, :mod:`.image_processing`).
3. Decode: each image, and each kept video frame as soon as it is decoded, is resized, normalised and
   written straight into its rows of the preallocated ``pixel_values``, decoding and resizing on
   separate threads (:mod:`.parallel`). No list of full-size frames ever exists.
4. Differential Frame Pruner: the keep-mask of every merged visual token (``pruning.pruning_mask``).
5. Render the prompt (one ``<image>`` per image / frame), tokenize it, and expand each ``<image>`` to the
   number of merged tokens that the image / frame *keeps*.

Output layout follows the official release: one ``<image>`` token id per merged visual token, items in
prompt order, ``pixel_values`` rows in merge-block order.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature

from ..errors import CheckpointError, ConversationError
from ..hub import pop_hub_kwargs, read_optional_json, resolve_processor_folder
from ..model.pruning import DEFAULT_MIN_TOKENS as DEFAULT_COMPRESSION_MIN_TOKENS
from ..model.pruning import DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD
from ..model.pruning import item_pruning_mask
from ..model.token_layout import merged_tokens, merged_tokens_per_item
from .chat_template import IMAGE_TOKEN, render_conversation
from .conversation import ConversationParser, MediaItem, ParsedConversation
from .image import PixelNormalizer, resize, write_patches
from .image_processing import IMAGE_PROCESSOR_CONFIG_NAME, VideoLLaMA3ImageProcessor, check_return_tensors
from .parallel import decode_workers, parallel_map, prefetched, resize_threads
from .video import DEFAULT_FPS, DEFAULT_MAX_FRAMES, ProgressCallback, VideoPlan

PROCESSOR_CONFIG_NAME = "processor_config.json"
# The class name the released checkpoints' processor_config.json uses; we answer to it without remote code.
OFFICIAL_PROCESSOR_CLASS = "Videollama3Qwen2Processor"


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
        folder = resolve_processor_folder(pretrained_model_name_or_path, **pop_hub_kwargs(kwargs))
        processor_config = read_optional_json(folder / PROCESSOR_CONFIG_NAME) or {}
        processor_config.pop("processor_class", None)
        processor_config.pop("auto_map", None)
        model_config = read_optional_json(folder / "config.json") or {}
        if "use_token_compression" in model_config:
            processor_config.setdefault("use_token_compression", bool(model_config["use_token_compression"]))
        image_keys = set(read_optional_json(folder / IMAGE_PROCESSOR_CONFIG_NAME) or {}) | {
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
        sample = ConversationParser(self, _as_root(media_root)).parse(conversation)
        return self._render(sample, add_system_prompt, add_generation_prompt)

    def _render(self, sample: ParsedConversation, add_system_prompt: bool, add_generation_prompt: bool) -> str:
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
        check_return_tensors(return_tensors)
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
        samples = [ConversationParser(self, root).parse(conv) for conv in conversations]

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
            keep = torch.ones(sum(merged_tokens_per_item(grid_sizes, merge_sizes)), dtype=torch.bool)

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
                # The lead frame's tokens belong to the previous chunk.
                masks.append(mask[merged_tokens((lead, gh, gw), m) :])
            row += t * per_frame
        if row != pixel_values.shape[0]:
            raise AssertionError("grid_sizes do not describe pixel_values")
        return torch.cat(masks) if masks else torch.ones(0, dtype=torch.bool)

    def _fill(self, out: torch.Tensor, sample: ParsedConversation, normalize: PixelNormalizer, progress) -> None:
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
            destinations: dict[int, list[tuple[MediaItem, int]]] = {}
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
            parallel_map(place, prefetched(*streams), resize_threads())

    def _write_frame(
        self,
        out: torch.Tensor,
        targets: list[list[tuple[MediaItem, int]]],
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


def _kept_per_frame(keep: torch.Tensor, grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> list[int]:
    """Kept merged tokens of every image / frame, in order (one entry per ``<image>`` placeholder)."""
    counts: list[int] = []
    start = 0
    for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
        per_frame = merged_tokens((1, gh, gw), m)
        counts.extend(keep[start : start + t * per_frame].view(t, per_frame).sum(dim=1).tolist())
        start += t * per_frame
    return counts


def _as_root(media_root: str | os.PathLike | None) -> Path | None:
    return None if media_root is None else Path(media_root)


def _load_tokenizer(folder: Path):
    """The checkpoint's tokenizer, by the class its config names, never through remote code."""
    import transformers

    config = read_optional_json(folder / "tokenizer_config.json") or {}
    name = config.get("tokenizer_class") or ""
    cls = getattr(transformers, name, None) or getattr(transformers, name.removesuffix("Fast"), None)
    try:
        if cls is not None:
            return cls.from_pretrained(folder)
        return transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot load the tokenizer ({exc})") from exc
