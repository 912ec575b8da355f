"""Helpers of the processing tests: the parity fixtures, synthetic media (written with PyAV / Pillow,
tiny and fast), and an independent oracle of the reference's ffmpeg frame sampling.

(A uniquely named module rather than ``conftest``: several test folders have a conftest.py, and
``from conftest import ...`` resolves to whichever was imported first.)
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "parity"
MEDIA_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "media"  # stored videos (see its README)
FIXTURE_MODEL = FIXTURES / "model"
CASE_NAMES = sorted(p.name for p in (FIXTURES / "cases").iterdir())


def load_case(name: str) -> tuple[dict, dict, dict]:
    """(case.json, inputs.safetensors, outputs.safetensors) of a fixture case."""
    folder = FIXTURES / "cases" / name
    return (
        json.loads((folder / "case.json").read_text()),
        load_file(folder / "inputs.safetensors"),
        load_file(folder / "outputs.safetensors"),
    )


def frame_pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame i of the synthetic videos: a moving bar on a gradient, different for every frame."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    rgb = np.stack(
        [
            np.broadcast_to(y, (height, width)),
            np.broadcast_to(x, (height, width)),
            np.full((height, width), (i * 37) % 256, np.float32),
        ],
        axis=-1,
    )
    rgb = rgb.astype(np.uint8)
    col = (i * 5) % max(width - 4, 1)
    rgb[:, col : col + 4] = (255, 255, 255)
    return rgb


def make_video(
    path: Path,
    num_frames: int = 30,
    fps: int = 10,
    size: tuple[int, int] = (48, 64),
    options: dict | None = None,
    rotation: int | None = None,
    codec: str = "libx264",
) -> Path:
    """An H.264 video of ``num_frames`` frames at ``fps``; size is (height, width)."""
    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", **(options or {})}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_zero_frame_video(path: Path) -> Path:
    """A Matroska file with an (empty) H.264 video track next to a short audio track."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def make_gif(path: Path, num_frames: int = 60, size: tuple[int, int] = (30, 40)) -> Path:
    height, width = size
    frames = [
        Image.fromarray(frame_pattern(i * 3, height, width)).convert("P", palette=Image.Palette.ADAPTIVE)
        for i in range(num_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0, disposal=1)
    return path


def make_frame_folder(path: Path, num_frames: int = 12, size: tuple[int, int] = (30, 40)) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(frame_pattern(i, *size)).save(path / f"frame_{i:04d}.png")
    return path


def make_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (with a tiny, invalid body)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


# --------------------------------------------------------------------------------------------------
# Oracle: the reference sampling, simulated frame by frame after decoding everything.
# --------------------------------------------------------------------------------------------------


def decode_all(path: Path) -> tuple[list[int], list[np.ndarray], Fraction, int]:
    """Every frame (presentation order) as RGB, with pts, the time base and the last frame's duration."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24"), f.duration) for f in container.decode(stream)]
        time_base = Fraction(stream.time_base)
    frames.sort(key=lambda x: x[0])
    last_duration = frames[-1][2] or (frames[-1][0] - frames[-2][0])
    return [f[0] for f in frames], [f[1] for f in frames], time_base, last_duration


def reference_sampling(path: Path, fps: float, max_frames: int) -> tuple[list[np.ndarray], list[float]]:
    """ffmpeg ``fps=F:round=down`` as a streaming state machine (as vf_fps.c runs it), then linspace."""
    pts, frames, tb, last_duration = decode_all(path)
    rate = Fraction(fps).limit_denominator(1001000)
    out_pts = [math.floor(p * tb * rate) for p in pts]  # each input frame in the output time base
    status_pts = math.floor((pts[-1] + last_duration) * tb * rate)  # end of stream, in output units
    outputs: list[int] = []
    buffered: list[int] = []  # at most two frames, as in the filter
    next_pts = None
    i, at_eof = 0, False
    while True:
        if len(buffered) < 2 and i < len(frames):  # read a frame while there is room
            buffered.append(i)
            i += 1
            continue
        at_eof = i == len(frames)
        if not buffered:
            break
        if next_pts is None:
            next_pts = out_pts[buffered[0]]
        if (len(buffered) == 2 and out_pts[buffered[1]] <= next_pts) or (at_eof and status_pts <= next_pts):
            buffered.pop(0)  # the newer frame serves this output (or the stream ended): drop the older
        else:
            outputs.append(buffered[0])  # output a copy of the older frame
            next_pts += 1
    timestamps = [k / fps for k in range(len(outputs))]
    if len(outputs) > max_frames:
        keep = np.linspace(0, len(outputs) - 1, max_frames, dtype=int)
        outputs, timestamps = [outputs[k] for k in keep], [timestamps[k] for k in keep]
    return [frames[i] for i in outputs], timestamps
