"""Images: loading, the visual-token budget, resizing, normalisation and patchification.

Everything here reproduces the reference image processor bit for bit (the parity fixtures check
``pixel_values`` to 1e-6, i.e. exactly): Pillow bicubic resampling on uint8 RGB, then
``float32(x * rescale_factor)`` computed in float64 as transformers' ``rescale`` does, then
``(x - mean) / std`` in float32. Because the input is uint8, rescale + normalise is a 256-entry lookup
table per channel, which is both exact and much cheaper than the float64 array arithmetic it replaces.

Patches are laid out in *merge-block order*: for merge size m the rows of one m x m block of patches are
consecutive, so that one merged visual token is ``m * m`` consecutive rows (the vision encoder, the
pruner and the token merge all rely on this).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import MediaError, MediaNotFoundError

PATCH_SIZE = 14
DEFAULT_MIN_TOKENS = 16
DEFAULT_MAX_TOKENS = 16384
# Refuse images whose header claims more pixels than this, before decoding anything. Equal to Pillow's own
# DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS), i.e. about 13400 x 13400.
MAX_IMAGE_PIXELS = 2 * 89_478_485
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


class ImageReader:
    """An image whose size is known but whose pixels are decoded only on :meth:`read`.

    Opening a file reads its header only: the size is checked against ``max_pixels`` (decompression-bomb
    protection) before a single pixel is decoded, and the processor can plan the visual-token budget of
    a whole conversation before decoding anything.

    Args:
        source: a path, a ``PIL.Image.Image``, or a uint8 array (H, W), (H, W, C) or (C, H, W) with C in
            {1, 3, 4} (numpy or torch).
        exif_transpose: apply the EXIF orientation of files (phone photos are stored sideways). The
            reference ignores it; it does not change images without an orientation tag.
        max_pixels: largest accepted ``width * height`` of a file.
    """

    def __init__(self, source: ImageLike, *, exif_transpose: bool = True, max_pixels: int = MAX_IMAGE_PIXELS):
        self.source = source
        self._image: Image.Image | None = None
        self._array: np.ndarray | None = None
        self._transpose = False
        if isinstance(source, (str, os.PathLike)):
            self.name = str(source)
            self._image = open_image_file(Path(source), max_pixels)
            width, height = self._image.size
            if exif_transpose:
                orientation = _exif_orientation(self._image)
                self._transpose = orientation not in (None, 1)
                if orientation in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
        elif isinstance(source, Image.Image):
            self.name = f"<PIL.Image {source.mode} {source.width}x{source.height}>"
            self._image = source
            width, height = source.size
        elif isinstance(source, (np.ndarray, torch.Tensor)):
            self._array = as_rgb_array(source)
            self.name = f"<array {tuple(source.shape)}>"
            height, width = self._array.shape[:2]
        else:
            raise MediaError(
                f"unsupported image {type(source).__name__}: expected a path, a PIL image or a uint8 array"
            )
        if width < 1 or height < 1:
            raise MediaError(f"{self.name}: empty image ({width}x{height})")
        self.height, self.width = int(height), int(width)

    def read(self) -> np.ndarray:
        """Decode the image. Returns (H, W, 3) uint8 RGB."""
        if self._array is not None:
            return self._array
        image = self._image
        try:
            if self._transpose:
                image = ImageOps.exif_transpose(image)
            # Exactly what the reference does (``Image.open(path).convert("RGB")``): grayscale is replicated,
            # alpha is dropped (not composited), palettes are expanded.
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb)
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
            raise MediaError(f"{self.name}: cannot decode the image: {exc}") from exc


def _exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag, read from the header only (None when absent or unreadable)."""
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels; such files are rare.
        return None
    try:
        return image.getexif().get(_EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, TypeError):  # a corrupt EXIF block: ignore the orientation
        return None


def open_image_file(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file reading only its header; refuse missing, empty, unreadable or too large files."""
    if not path.exists():
        raise MediaNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own limit, checked inside open()
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = claimed.group(1) if claimed else "too many"
        raise MediaError(
            f"{path}: refused to decode: the header claims {pixels} pixels, more than the limit of "
            f"{min(max_pixels, MAX_IMAGE_PIXELS)} (a decompression bomb?)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc})") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise MediaError(
            f"{path}: refused to decode: the header claims {width}x{height} = {width * height} pixels, more than "
            f"the limit of {max_pixels} (a decompression bomb?)"
        )
    return image


def as_rgb_array(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A uint8 image array as (H, W, 3) RGB: grayscale replicated, alpha dropped, channels-first moved last."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if array.dtype != np.uint8:
        raise MediaError(
            f"image arrays must be uint8 (0-255), got {array.dtype}; convert e.g. with (x * 255).round().astype(np.uint8)"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise MediaError(f"an image array must have 2 or 3 dimensions, got shape {tuple(array.shape)}")
    if array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    channels = array.shape[-1]
    if channels == 1:
        array = np.repeat(array, 3, axis=-1)
    elif channels == 4:
        array = array[..., :3]
    elif channels != 3:
        raise MediaError(f"an image array must have 1, 3 or 4 channels, got shape {tuple(array.shape)}")
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------------------------
# Visual-token budget
# --------------------------------------------------------------------------------------------------


def target_sizes(
    items: Sequence[tuple[int, int, int]],
    merge_sizes: Sequence[int],
    *,
    patch_size: int = PATCH_SIZE,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[tuple[int, int]]:
    """Resized (height, width) of every image / video of one sample, sharing one token budget.

    Args:
        items: (num_frames, height, width) per item (1 frame for an image; the size of the first frame).
        merge_sizes: the merge size m of each item (1 for images, 2 for video frames).
        max_tokens: merged visual tokens allowed for the whole sample (all images and frames together).

    Returns:
        (h, w) per item, multiples of ``patch_size * m``.
    """
    if len(items) != len(merge_sizes):
        raise ValueError(f"{len(items)} items but {len(merge_sizes)} merge sizes")
    if not items:
        return []
    if max_tokens < 1:
        raise MediaError(f"max_tokens must be >= 1, got {max_tokens}")
    if all(m == merge_sizes[0] for m in merge_sizes):
        return _simple_sizes(items, patch_size * merge_sizes[0], min_tokens, max_tokens)
    return _mixed_sizes(items, [patch_size * m for m in merge_sizes], max_tokens)


def _simple_sizes(items, factor: int, min_tokens: int, max_tokens: int) -> list[tuple[int, int]]:
    # Every frame of every item gets an equal share of the budget; then each item is rounded to the
    # factor grid, shrunk to its share if needed, and enlarged to min_tokens if too small.
    num_frames = sum(t for t, _, _ in items)
    max_pixels = max_tokens * factor * factor
    min_pixels = min_tokens * factor * factor
    share = max_pixels // num_frames
    sizes = []
    for _, height, width in items:
        h = round(height / factor) * factor
        w = round(width / factor) * factor
        if h * w > share:
            beta = math.sqrt((height * width) / share)
            h = math.floor(height / beta / factor) * factor
            w = math.floor(width / beta / factor) * factor
        if h * w < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h = math.ceil(height * beta / factor) * factor
            w = math.ceil(width * beta / factor) * factor
        sizes.append((h, w))
    return sizes


def _mixed_sizes(items, factors: list[int], max_tokens: int) -> list[tuple[int, int]]:
    # Items with different merge sizes: one global scale for everything when over budget, no minimum.
    total = sum(t * math.ceil(height / f) * math.ceil(width / f) for (t, height, width), f in zip(items, factors))
    sizes = []
    for (_, height, width), f in zip(items, factors):
        if total > max_tokens:
            beta = math.sqrt(total / max_tokens)
            h = math.floor(height / beta / f) * f
            w = math.floor(width / beta / f) * f
        else:
            h = round(height / f) * f
            w = round(width / f) * f
        # The reference has no minimum here and crashes on a zero-sized resize (a tiny image next to a
        # video); one merged token per side is the smallest valid size.
        sizes.append((max(h, f), max(w, f)))
    return sizes


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------


def resize(
    image: np.ndarray | Image.Image, size: tuple[int, int], resample: int = Image.Resampling.BICUBIC
) -> np.ndarray:
    """Pillow resize of an RGB uint8 image to ``size`` = (h, w). Returns (h, w, 3) uint8."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    h, w = size
    if pil.size != (w, h):
        pil = pil.resize((w, h), resample)
    return np.asarray(pil)


class PixelNormalizer:
    """uint8 RGB -> normalised float32, exactly as transformers' ``rescale`` then ``normalize``.

    ``rescale`` multiplies in float64 and casts to float32; ``normalize`` subtracts and divides in float32.
    For uint8 input both collapse into one exact lookup table of 256 float32 values per channel.
    """

    def __init__(
        self,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        values = np.arange(256, dtype=np.float64)
        if do_rescale:
            values = values * rescale_factor
        table = np.stack([values.astype(np.float32)] * 3)  # (3, 256)
        if do_normalize:
            mean = np.asarray(image_mean, dtype=np.float32).reshape(3, 1)
            std = np.asarray(image_std, dtype=np.float32).reshape(3, 1)
            table = (table - mean) / std
        self.table = np.ascontiguousarray(table, dtype=np.float32)  # (3, 256)
        self.same_for_all_channels = bool((self.table == self.table[:1]).all())

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 -> (h, w, 3) float32."""
        return self.lookup(image, channel_axis=-1)

    def lookup(self, values: np.ndarray, channel_axis: int, out: np.ndarray | None = None) -> np.ndarray:
        """Table lookup of a uint8 array whose axis ``channel_axis`` holds the 3 channels."""
        if self.same_for_all_channels:
            return np.take(self.table[0], values, out=out)
        shape = [1] * values.ndim
        shape[channel_axis] = 3
        offsets = (np.arange(3, dtype=np.uint16) * 256).reshape(shape)
        return np.take(self.table.reshape(-1), values.astype(np.uint16) + offsets, out=out)


def write_patches(
    out: torch.Tensor,
    frame: np.ndarray,
    merge_size: int,
    normalizer: PixelNormalizer,
    patch_size: int = PATCH_SIZE,
) -> None:
    """Normalise and patchify one resized uint8 frame into its rows of ``out``.

    Args:
        out: (gh * gw, 3 * p * p) float32 destination rows of this frame (contiguous).
        frame: (h, w, 3) uint8 RGB, h = gh * p and w = gw * p with gh, gw multiples of ``merge_size``.

    Rows are ordered block row, block column, row in block, column in block; each row is channel-major
    (3, p, p), as :func:`patchify`. The bytes are rearranged first and the lookup table then writes the
    float32 values straight into ``out``: one pass over the output, ~8x faster than permuting floats.
    """
    m, p = merge_size, patch_size
    h, w, _ = frame.shape
    bh, bw = h // (p * m), w // (p * m)
    chw = np.ascontiguousarray(frame.transpose(2, 0, 1))  # (3, h, w)
    blocks = chw.reshape(3, bh, m, p, bw, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # (bh, bw, mh, mw, 3, p, p)
    blocks = np.ascontiguousarray(blocks)
    normalizer.lookup(blocks, channel_axis=4, out=out.numpy().reshape(blocks.shape))


def patchify(frames: np.ndarray | torch.Tensor, merge_size: int, patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """(t, 3, h, w) pixels -> (t * gh * gw, 3 * p * p) rows in merge-block order (the reference's reshape)."""
    frames = torch.as_tensor(frames)
    t, c, h, w = frames.shape
    m, p = merge_size, patch_size
    gh, gw = h // p, w // p
    x = frames.reshape(t, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (t, bh, bw, mh, mw, c, p, p)
    return x.reshape(t * gh * gw, c * p * p)
