"""The image processor: the visual-token budget, resizing, normalisation and patchification of images and
video frames, configured by ``preprocessor_config.json`` (transformers' ``image_processing_video_llama_3``).

The pixel-level pieces (``target_sizes``, ``resize``, ``PixelNormalizer``, ``write_patches``) are in
:mod:`.image`; this class holds their settings, loads and saves them, and processes in-memory images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature

from ..errors import MediaError
from ..hub import pop_hub_kwargs, read_optional_json, resolve_processor_folder
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

IMAGE_PROCESSOR_CONFIG_NAME = "preprocessor_config.json"
# The class name the released checkpoints' preprocessor_config.json uses; we answer to it without remote code.
OFFICIAL_IMAGE_PROCESSOR_TYPE = "Videollama3ImageProcessor"


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
        folder = resolve_processor_folder(pretrained_model_name_or_path, **pop_hub_kwargs(kwargs))
        config = read_optional_json(folder / IMAGE_PROCESSOR_CONFIG_NAME) or {}
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
        check_return_tensors(return_tensors)
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


def check_return_tensors(return_tensors: str | None) -> None:
    if return_tensors not in (None, "pt"):
        raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
