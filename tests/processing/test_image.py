"""Images: loading and conversion to RGB, the token budget, resizing, normalisation, patch order, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from vl3_media import FIXTURES, load_case, make_png_header

from videollama3.errors import MediaError, MediaNotFoundError
from videollama3.processing import ImageReader, VideoLLaMA3ImageProcessor, target_sizes
from videollama3.processing.image import PixelNormalizer, as_rgb_array, patchify, write_patches

MEDIA = FIXTURES / "media"


# -- loading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image_gray.png", "image_rgba.png", "image_a.png"])
def test_files_convert_to_rgb_as_the_reference(name):
    reader = ImageReader(MEDIA / name)
    expected = np.asarray(Image.open(MEDIA / name).convert("RGB"))
    assert (reader.height, reader.width) == expected.shape[:2]
    np.testing.assert_array_equal(reader.read(), expected)


def test_palette_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        ImageReader(tmp_path / "p.png").read(), np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    )


def test_arrays_and_pil_images_give_the_same_pixels():
    rgba = np.asarray(Image.open(MEDIA / "image_rgba.png"))
    rgb = rgba[..., :3]
    assert rgba.shape[-1] == 4
    for source in (
        rgba,
        rgb,
        rgb.transpose(2, 0, 1),
        torch.from_numpy(rgb.copy()),
        Image.open(MEDIA / "image_rgba.png"),
    ):
        np.testing.assert_array_equal(ImageReader(source).read(), rgb)
    gray = np.asarray(Image.open(MEDIA / "image_gray.png"))
    np.testing.assert_array_equal(as_rgb_array(gray), np.asarray(Image.open(MEDIA / "image_gray.png").convert("RGB")))
    np.testing.assert_array_equal(as_rgb_array(gray[..., None]), as_rgb_array(gray))


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:5, :5] = 255  # a white corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turned 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "phone.png", exif=exif)
    reader = ImageReader(tmp_path / "phone.png")
    assert (reader.height, reader.width) == (40, 20)
    np.testing.assert_array_equal(reader.read(), np.rot90(rgb, k=-1))
    assert ImageReader(tmp_path / "phone.png", exif_transpose=False).read().shape == (20, 40, 3)


def test_float_arrays_are_refused():
    with pytest.raises(MediaError, match="uint8"):
        ImageReader(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(MediaError, match="channels"):
        ImageReader(np.zeros((6, 6, 5), np.uint8))


def test_missing_empty_and_unreadable_files(tmp_path):
    with pytest.raises(MediaNotFoundError, match="nope.png"):
        ImageReader(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        ImageReader(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(MediaError, match="text.png: not a readable image"):
        ImageReader(tmp_path / "text.png")


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = make_png_header(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(MediaError, match="bomb.png.*header claims 10000000000 pixels"):
        ImageReader(path)
    # A modest claim passes the header check, and only then fails on the (invalid) pixel data.
    reader = ImageReader(make_png_header(tmp_path / "small.png", 64, 64))
    with pytest.raises(MediaError, match="cannot decode"):
        reader.read()
    with pytest.raises(MediaError, match="64x64 = 4096 pixels, more than the limit of 1000"):
        ImageReader(make_png_header(tmp_path / "limit.png", 64, 64), max_pixels=1000)


# -- budget --------------------------------------------------------------------------------------------------


def _reference_simple(sizes, factor, min_tokens, max_tokens):
    """The official ``simple_batched_resize`` (with height/width in the right order)."""
    max_pixels, min_pixels = max_tokens * factor * factor, min_tokens * factor * factor
    n = sum(t for t, _, _ in sizes)
    out = []
    for _, height, width in sizes:
        h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
        if h_bar * w_bar > (max_pixels // n):
            beta = math.sqrt((height * width) / (max_pixels // n))
            h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
        if h_bar * w_bar < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
        out.append((h_bar, w_bar))
    return out


@pytest.mark.parametrize(
    ("items", "merge", "max_tokens"),
    [
        ([(1, 240, 320)], 1, 16384),
        ([(1, 700, 1000)], 1, 256),
        ([(1, 29, 41)], 1, 16384),  # upscaled to the minimum
        ([(1, 240, 320), (1, 29, 41)], 1, 16384),
        ([(180, 720, 1280)], 2, 16384),
        ([(60, 720, 1280)], 2, 16384),
        ([(20, 96, 160)], 2, 512),
        ([(1, 1, 1)], 1, 16384),
        ([(1, 1, 10000)], 1, 64),
    ],
)
def test_simple_rule_matches_the_reference(items, merge, max_tokens):
    got = target_sizes(items, [merge] * len(items), max_tokens=max_tokens)
    assert got == _reference_simple(items, 14 * merge, 16, max_tokens)
    for h, w in got:
        assert h % (14 * merge) == 0 and w % (14 * merge) == 0 and h > 0 and w > 0


def test_mixed_merge_sizes_share_one_scale():
    # image 240x320 (m=1) + 6 frames 160x224 (m=2): 18 * 23 + 6 * 6 * 8 = 702 tokens <= budget: rounded.
    assert target_sizes([(1, 240, 320), (6, 160, 224)], [1, 2]) == [(238, 322), (168, 224)]
    # Over budget: one beta for everything, floored.
    total = 18 * 23 + 6 * 6 * 8
    beta = math.sqrt(total / 100)
    assert target_sizes([(1, 240, 320), (6, 160, 224)], [1, 2], max_tokens=100) == [
        (math.floor(240 / beta / 14) * 14, math.floor(320 / beta / 14) * 14),
        (math.floor(160 / beta / 28) * 28, math.floor(224 / beta / 28) * 28),
    ]
    # A tiny image next to a video: the reference would resize to 0 and crash; we keep one token per side.
    assert target_sizes([(1, 3, 3), (2, 56, 56)], [1, 2]) == [(14, 14), (56, 56)]


def test_one_pixel_image_is_upscaled_to_the_minimum():
    processor = VideoLLaMA3ImageProcessor()
    out = processor(np.full((1, 1, 3), 200, np.uint8))
    assert out["grid_sizes"].tolist() == [[1, 4, 4]]
    assert out["pixel_values"].shape == (16, 588)
    torch.testing.assert_close(out["pixel_values"], torch.full((16, 588), 200 / 255 * 2 - 1), atol=1e-6, rtol=0)


# -- pixels ----------------------------------------------------------------------------------------------------


def test_lookup_table_equals_transformers_float_arithmetic():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    normalizer = PixelNormalizer(True, 1 / 255, True, mean, std)
    expected = (values.astype(np.float64) * (1 / 255)).astype(np.float32)  # transformers' rescale
    expected = (expected - np.array(mean, np.float32)) / np.array(std, np.float32)  # and normalize
    np.testing.assert_array_equal(normalizer(values), expected)
    assert not normalizer.same_for_all_channels and PixelNormalizer().same_for_all_channels


@pytest.mark.parametrize("merge_size", [1, 2])
@pytest.mark.parametrize("mean", [(0.5, 0.5, 0.5), (0.1, 0.2, 0.3)])
def test_write_patches_is_the_reference_patch_order(merge_size, mean):
    rng = np.random.default_rng(merge_size)
    frame = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)
    normalizer = PixelNormalizer(image_mean=mean)
    out = torch.empty(4 * 6, 588)
    write_patches(out, frame, merge_size, normalizer)
    reference = patchify(torch.from_numpy(normalizer(frame)).permute(2, 0, 1)[None], merge_size)
    assert torch.equal(out, reference)

    def row_of(patch):
        return torch.from_numpy(normalizer(patch)).permute(2, 0, 1).reshape(-1)

    # Row 1 is always the patch right of row 0; with 2x2 merging row 2 is the one below row 0 (same block).
    assert torch.equal(out[1], row_of(frame[:14, 14:28]))
    assert torch.equal(out[2], row_of(frame[14:28, :14] if merge_size == 2 else frame[:14, 28:42]))


def test_image_processor_standalone_matches_the_fixture():
    _, inputs, _ = load_case("multi_image")
    processor = VideoLLaMA3ImageProcessor.from_pretrained(FIXTURES / "model")
    out = processor([Image.open(MEDIA / "image_a.png"), Image.open(MEDIA / "image_b.png")], merge_size=1)
    assert torch.equal(out["grid_sizes"], inputs["grid_sizes"])
    torch.testing.assert_close(out["pixel_values"], inputs["pixel_values"], atol=1e-6, rtol=0)


def test_image_processor_config_round_trip(tmp_path):
    processor = VideoLLaMA3ImageProcessor.from_pretrained(FIXTURES / "model", max_tokens=1024)
    assert processor.max_tokens == 1024 and processor.image_mean == [0.5, 0.5, 0.5]
    processor.save_pretrained(tmp_path)
    again = VideoLLaMA3ImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    assert again.to_dict()["image_processor_type"] == "Videollama3ImageProcessor"
