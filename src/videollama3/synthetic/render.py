"""Pixels of the synthetic world: Pillow drawing (2x supersampled, so edges are anti-aliased) and PyAV video.

Images and frames are 84 x 84 by default: 6 x 6 patches of 14 pixels, merged 2 x 2 into 3 x 3 tokens, one
per cell of the world's 3 x 3 grid (and one per bar of a chart), without resizing.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .world import COLOURS, ImageScene, ObjectState, Shape, VideoScene, frame_times

IMAGE_SIZE = 84
VIDEO_SIZE = 84
SUPERSAMPLE = 2


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled default font (a scalable FreeType font in Pillow >= 10.1, a bitmap font before)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if kind == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"no polygon for shape {kind!r}")


def draw_shape(draw: ImageDraw.ImageDraw, obj: Shape | ObjectState, width: int, height: int, colour=None) -> None:
    """Draw one object; positions and radius are fractions of the image side."""
    side = min(width, height)
    cx, cy, r = obj.x * width, obj.y * height, obj.radius * side
    fill = colour or COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r * (1.1 if obj.shape == "triangle" else 1.0)), fill=fill)


def render_image(scene: ImageScene, size: int = IMAGE_SIZE) -> Image.Image:
    """The RGB image of an :class:`ImageScene` (``size`` x ``size``)."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.shapes:
        draw_shape(draw, obj, big, big)
    if scene.text is not None:
        t = scene.text
        font = _font(int(0.2 * big))
        cy = (t.row + 0.5) / 3 * big
        draw.text((t.x * big, cy), t.word, fill=t.rgb, font=font, anchor="mm")
    if scene.chart is not None:
        _draw_chart(draw, scene, big)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _draw_chart(draw: ImageDraw.ImageDraw, scene: ImageScene, big: int) -> None:
    chart = scene.chart
    n = len(chart.values)
    left, right, base, top = 0.0, float(big), 0.85 * big, 0.2 * big  # one bar per grid column
    slot = (right - left) / n
    unit = (base - top) / 9
    font = _font(int(0.12 * big))
    draw.line([(left, base), (right, base)], fill=(40, 40, 40), width=max(1, big // 112))
    for i, (label, value) in enumerate(zip(chart.labels, chart.values)):
        x0 = left + i * slot + 0.18 * slot
        x1 = left + (i + 1) * slot - 0.18 * slot
        y1 = base - value * unit
        draw.rectangle([x0, y1, x1, base], fill=COLOURS[chart.colour])
        cx = (x0 + x1) / 2
        draw.text((cx, y1 - 0.01 * big), str(value), fill=(20, 20, 20), font=font, anchor="md")
        draw.text((cx, base + 0.015 * big), label, fill=(20, 20, 20), font=font, anchor="mt")


def render_frame(scene: VideoScene, time: float, size: int = VIDEO_SIZE) -> np.ndarray:
    """The (size, size, 3) uint8 frame of a :class:`VideoScene` at ``time`` seconds."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(image)
    for state in scene.state_at(time):
        if state.visible:
            draw_shape(draw, state, big, big)
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


def render_video(scene: VideoScene, size: int = VIDEO_SIZE) -> list[np.ndarray]:
    """Every frame of the video; identical states give identical frames (static stretches stay static)."""
    frames: list[np.ndarray] = []
    cache: dict[str, np.ndarray] = {}
    for t in frame_times(scene.duration, scene.fps):
        key = repr(scene.state_at(t))
        if key not in cache:
            cache[key] = render_frame(scene, t, size)
        frames.append(cache[key])
    return frames


def write_video(frames: list[np.ndarray], path: str | Path, fps: int, codec: str = "libx264") -> None:
    """Encode RGB frames with PyAV (H.264 ``yuv420p`` by default; ``mpeg4`` as a fallback codec).

    Single-threaded, with a fixed GOP and without x264's macroblock-tree rate control, so that the same
    frames give the same file: with the tree on, about 1 video in 500 of the synthetic world was encoded
    differently from one process to the next (its output depends on the process's memory), and those
    few frames differing by a few levels were enough to make two renderings of the world, and the
    models trained on them, differ.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        options = (
            {"crf": "12", "preset": "medium", "g": str(4 * fps), "threads": "1", "x264-params": "mbtree=0"}
            if codec == "libx264"
            else {}
        )
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec != "libx264":
            stream.bit_rate = 2_000_000
        stream.thread_type = "NONE"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
