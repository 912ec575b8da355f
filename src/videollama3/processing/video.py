"""Videos: which frames to take, and decoding only those, with PyAV.

The reference samples a video with the ffmpeg command line::

    ffmpeg [-ss START -t DURATION] -i VIDEO -vf fps=F:round=down -f rawvideo -pix_fmt rgb24 pipe:

then keeps ``linspace(0, N - 1, max_frames)`` of the N frames if there are too many, and labels frame k
``start + k / F``. That decodes every frame, converts the selected ones to full-resolution RGB and holds
all of them in memory. Here the same frames are found from the container's packet timestamps alone
(:func:`fps_filter_select` is ffmpeg's ``fps`` filter in closed form), then only the packets needed to
reconstruct them are decoded (seeking to the keyframe before a frame when frames are far apart), and
each kept frame is handed to the caller one at a time, to be resized straight away. H.264 pictures that
no other picture references (most B-frames) are not even decoded unless they are one of the wanted frames:
leaving them out cannot change any other frame, so the output stays bit-exact.

Frame choice, for reference (ffmpeg's ``vf_fps.c`` with ``round=down``): input frame i at time t_i
(seconds since the start of the timeline) gets the output slot ``o_i = floor(t_i * F)``; output frame p,
for p from ``o_0`` to ``floor(t_end * F) - 1`` (t_end = end of the last frame), is the *last* input frame
with ``o_i <= p``, i.e. the last frame shown before ``(p + 1) / F``. With ``-ss`` the timeline starts at
the seek point (frames before it are trimmed) and ``-t`` ends it at the first frame at or past
``first + duration``.

Clips shorter than 1 s (given start and end), GIFs (taken as 25 fps) and folders of frames (taken as
3 fps) are sampled by frame index instead, as the reference does.

This module holds the sampling rules and the plans (:func:`plan_video`, :class:`VideoPlan`); reading and
decoding the frames a plan selected is :mod:`.video_decoding`'s.
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError, MediaNotFoundError
from .image import resize
from .video_decoding import (
    AV_TIME_BASE,
    FolderSource,
    FrameSource,
    GifSource,
    ListSource,
    ProgressCallback,
    StreamSource,
)

DEFAULT_FPS = 1
DEFAULT_MAX_FRAMES = 180


@dataclass(frozen=True)
class VideoSampling:
    """How to sample a video: ``fps`` frames per second, at most ``max_frames``, within [start, end]."""

    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    start_time: float | None = None
    end_time: float | None = None

    def validate(self, name: str) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps):
            raise MediaError(f"{name}: fps must be a positive number, got {self.fps!r}")
        if self.fps <= 0:
            raise MediaError(f"{name}: fps must be > 0, got {self.fps}")
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, (int, np.integer)):
            raise MediaError(f"{name}: max_frames must be a positive integer, got {self.max_frames!r}")
        if self.max_frames < 1:
            raise MediaError(f"{name}: max_frames must be >= 1, got {self.max_frames}")
        for key in ("start_time", "end_time"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise MediaError(f"{name}: {key} must be a number of seconds, got {value!r}")
        if self.start_time is not None and self.end_time is not None and self.start_time > self.end_time:
            raise MediaError(f"{name}: start_time {self.start_time} is after end_time {self.end_time}")
        if self.start_time is None and self.end_time is not None and self.end_time <= 0:
            raise MediaError(f"{name}: end_time must be > 0, got {self.end_time}")


# --------------------------------------------------------------------------------------------------
# Frame selection (pure functions, exact integer arithmetic)
# --------------------------------------------------------------------------------------------------


def fps_filter_select(times: Sequence[Fraction], end: Fraction, fps: Fraction) -> list[int]:
    """ffmpeg's ``fps=F:round=down``: for each output frame, the index of the input frame it repeats.

    Args:
        times: presentation times of the input frames in seconds, ascending (exact fractions).
        end: the end-of-stream time (end of the last frame, or where ``-t`` cut the input).
        fps: the output rate F.

    Returns:
        One input index per output frame; an index repeats when F exceeds the input rate.
    """
    if not times:
        return []
    slots = [math.floor(t * fps) for t in times]  # o_i, the output slot each input frame falls in
    last_slot = math.floor(end * fps)  # outputs p < last_slot exist
    selected, i = [], 0
    for p in range(slots[0], last_slot):
        while i + 1 < len(slots) and slots[i + 1] <= p:
            i += 1
        selected.append(i)
    return selected


def uniform_indices(count: int, max_frames: int) -> np.ndarray:
    """``linspace(0, count - 1, max_frames)`` cast to int, as the reference subsamples; all if fewer."""
    if count <= max_frames:
        return np.arange(count)
    return np.linspace(0, count - 1, max_frames, dtype=int)


def index_sampling(num_frames: int, video_fps: float, sampling: VideoSampling) -> tuple[list[int], list[float]]:
    """The reference's frame-index sampling (clips under 1 s, GIFs, folders of frames).

    Returns:
        (frame indices, timestamps in seconds = index / video_fps).
    """
    s, e = sampling.start_time, sampling.end_time
    if s is not None and e is not None:
        s, e = max(s, 0.0), max(e, 0.0)
        if s == e:
            e = s + 1
    first = 0 if s is None else max(int(s * video_fps) - 1, 0)
    last = num_frames - 1 if e is None else min(int(e * video_fps) - 1, num_frames - 1)
    count = last - first + 1
    if count <= 0:
        return [], []
    if count / video_fps < sampling.max_frames:
        # One frame from the middle of every segment of video_fps / fps frames. (The reference divides by
        # zero when fps > video_fps; one frame per segment is then the closest meaning.)
        segment = max(min(video_fps // sampling.fps, count), 1)
        offsets = np.arange(segment // 2, count, segment, dtype=int)
    else:
        offsets = uniform_indices(count, sampling.max_frames)
    indices = [first + int(k) for k in offsets]
    return indices, [i / video_fps for i in indices]


def _parse_time_us(seconds: float) -> int:
    """Microseconds, as ffmpeg's ``av_parse_time`` reads ``str(seconds)`` (fraction truncated to 6 digits)."""
    text = repr(float(seconds))
    if "e" in text or "E" in text or "inf" in text or "nan" in text:
        return round(seconds * AV_TIME_BASE)
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    us = int(whole) * AV_TIME_BASE + int((frac + "000000")[:6])
    return -us if negative else us


def _rescale_near(value: int, src: Fraction, dst: Fraction) -> int:
    """``av_rescale_q`` (round half away from zero) of ``value`` from time base ``src`` to ``dst``."""
    exact = Fraction(value) * src / dst
    floor = math.floor(abs(exact) + Fraction(1, 2))
    return floor if exact >= 0 else -floor


# --------------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoPlan:
    """The frames one video item will show, known before decoding any of them.

    Attributes:
        name: the video (path or description), for messages.
        height, width: size of the (first) frame, after rotation metadata is applied.
        timestamps: time of each selected frame in seconds (what the prompt shows).
        keys: per selected frame, the source frame it is (a pts for video files, an index otherwise);
            repeated keys are decoded once.
    """

    name: str
    height: int
    width: int
    timestamps: list[float]
    keys: list[Any]
    source: FrameSource = field(repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def num_frames(self) -> int:
        return len(self.keys)

    def frames(
        self, size: tuple[int, int] | None = None, progress: ProgressCallback | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the selected frames in order, resizing each as soon as it is decoded.

        Args:
            size: (h, w) to resize to with Pillow bicubic, or None for the original size.

        Yields:
            (k, frame) for every selected frame k, frame (h, w, 3) uint8 RGB. At most one full-size
            frame is alive at a time.
        """
        wanted, outputs = self._positions()
        for key, frame in self.source.decode(wanted, progress):
            if size is not None:
                frame = resize(frame, size)
            for k in outputs[key]:
                yield k, frame

    def frame_streams(
        self, progress: ProgressCallback | None = None, parts: int = 1
    ) -> list[Iterator[tuple[int, np.ndarray]]]:
        """The selected frames, at full size, as up to ``parts`` iterators that decode independently (each
        from its own keyframe, with its own decoder), to be consumed in parallel.

        Every selected frame k comes out of exactly one iterator as (k, frame), in order within it. The
        video is split only where no decoded packet is shared (between GOPs), into stretches of similar
        decoding work; a short video, or one whose frames all hang on one keyframe, gives one iterator.
        ``progress`` gets the sum over the iterators (their totals as they become known).
        """
        wanted, outputs = self._positions()
        groups = self.source.partition(wanted, parts)
        done, totals = [0] * len(groups), [0] * len(groups)
        lock = threading.Lock()

        def part_progress(i: int) -> ProgressCallback | None:
            if progress is None:
                return None

            def report(d: int, t: int) -> None:
                with lock:
                    done[i], totals[i] = d, t
                    progress(sum(done), sum(totals))

            return report

        def stream(i: int, keys: list) -> Iterator[tuple[int, np.ndarray]]:
            threads = None if len(groups) == 1 else 1  # parallel decoders: one thread each
            for key, frame in self.source.decode(keys, part_progress(i), threads=threads):
                for k in outputs[key]:
                    yield k, frame

        return [stream(i, keys) for i, keys in enumerate(groups)]

    def _positions(self) -> tuple[list[Any], dict[Any, list[int]]]:
        """The distinct source keys to decode (ascending), and the selected positions each one fills."""
        outputs: dict[Any, list[int]] = {}
        for k, key in enumerate(self.keys):
            outputs.setdefault(key, []).append(k)
        return sorted(outputs), outputs

    def read(self, size: tuple[int, int] | None = None, progress: ProgressCallback | None = None) -> list[np.ndarray]:
        """All selected frames as a list of (h, w, 3) uint8 arrays, in order."""
        frames: list[np.ndarray | None] = [None] * len(self)
        for k, frame in self.frames(size, progress):
            frames[k] = frame
        return frames  # type: ignore[return-value]


def plan_video(
    video: str | os.PathLike | Sequence,
    sampling: VideoSampling | None = None,
    *,
    timestamps: Sequence[float] | None = None,
) -> VideoPlan:
    """Plan the frames of a video file, a GIF, a folder of frames, or a list of frames.

    Args:
        video: a path (file or folder), or a sequence of frames (PIL images / uint8 arrays).
        sampling: fps, max_frames and trimming (defaults: 1 fps, 180 frames, whole video).
        timestamps: for a list of frames, the time of each frame in seconds (optional).
    """
    sampling = sampling or VideoSampling()
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        sampling.validate(str(path))
        if not path.exists():
            raise MediaNotFoundError(f"video not found: {path}")
        if path.is_dir():
            return _plan_index_sampled(FolderSource(path), sampling)
        if path.stat().st_size == 0:
            raise MediaError(f"{path}: empty file")
        if path.suffix.lower() == ".gif":
            return _plan_index_sampled(GifSource(path), sampling)
        source = StreamSource(path)
        s, e = sampling.start_time, sampling.end_time
        if s is not None and e is not None and e - s < 1:  # short clips: sampled by frame index
            return _plan_index_sampled(source, sampling)
        return _plan_fps_filter(source, sampling)
    if isinstance(video, Sequence) and not isinstance(video, (str, bytes)):
        return _plan_frame_list(video, timestamps, sampling)
    raise MediaError(f"unsupported video {type(video).__name__}: expected a path or a list of frames")


def load_video(
    video: str | os.PathLike | Sequence,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    start_time: float | None = None,
    end_time: float | None = None,
    size: tuple[int, int] | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[np.ndarray], list[float]]:
    """Sample a video as the reference does. Returns (frames (h, w, 3) uint8, timestamps in seconds)."""
    plan = plan_video(video, VideoSampling(fps, max_frames, start_time, end_time))
    return plan.read(size, progress), list(plan.timestamps)


def _plan_fps_filter(source: StreamSource, sampling: VideoSampling) -> VideoPlan:
    """The reference's ffmpeg path, computed from packet timestamps."""
    name = str(source.path)
    tb = source.time_base
    fps = Fraction(sampling.fps).limit_denominator(1001000)  # ffmpeg parses the rate with av_d2q(x, 1001000)
    # What the reference reads with ffprobe (printed with 6 decimals).
    duration = float(f"{source.format_duration:.6f}")
    stream_start = float(f"{source.stream_start:.6f}")

    start_time, end_time = sampling.start_time, sampling.end_time
    do_trim = start_time is not None or end_time is not None
    if start_time is not None:
        if start_time >= duration:
            raise MediaError(f"{name}: start_time {start_time} s is past the end of the video ({duration:.3f} s)")
        new_start = max(stream_start, start_time)
        duration -= new_start - start_time
        start = new_start
    else:
        start = stream_start
    if end_time is not None:
        duration = min(duration, end_time - start)

    # ffmpeg's timeline: timestamps shifted so that the seek point (relative to the file start) is 0.
    offset_us = -(source.container_start_us + (_parse_time_us(start) if do_trim else 0))
    offset = _rescale_near(offset_us, Fraction(1, AV_TIME_BASE), tb)
    pts = source.frame_pts
    shifted = [p + offset for p in pts]
    first, stop = 0, len(pts)
    end_shifted = shifted[-1] + source.last_duration if pts else 0
    if do_trim:
        # The trim filter of accurate seeking: drop frames before 0, then end at the first frame at or past
        # first_kept + duration (which also becomes the end-of-stream time).
        first = bisect_right(shifted, -1)  # first index with shifted >= 0
        duration_tb = _rescale_near(_parse_time_us(duration), Fraction(1, AV_TIME_BASE), tb)
        if first < len(pts) and duration_tb > 0:
            limit = shifted[first] + duration_tb
            stop = first + bisect_right(shifted[first:], limit - 1)
            if stop < len(pts):
                end_shifted = shifted[stop]
    kept = range(first, stop)
    if not kept:
        raise MediaError(f"{name}: no video frames between {start} s and {start + duration} s")
    times = [shifted[i] * tb for i in kept]
    selected = fps_filter_select(times, end_shifted * tb, fps)
    if not selected:
        # Shorter than one output period (e.g. a 0.5 s video at 1 fps): ffmpeg outputs nothing and the
        # reference fails. Use its rule for short clips instead (the middle frame).
        return _plan_index_sampled(source, sampling)
    # The reference's labels: np.arange(start, start + duration + 1 / fps, 1 / fps)[:N].
    step = 1 / sampling.fps
    labels = np.arange(start, start + duration + step, step)[: len(selected)]
    if len(labels) < len(selected):  # never with consistent metadata; keep the same rule for the rest
        labels = start + np.arange(len(selected)) * step
    idx = uniform_indices(len(selected), sampling.max_frames)
    keys = [pts[first + selected[k]] for k in idx]
    return VideoPlan(name, source.height, source.width, [float(labels[k]) for k in idx], keys, source)


def _plan_index_sampled(source: FrameSource, sampling: VideoSampling) -> VideoPlan:
    indices, timestamps = index_sampling(source.num_frames, source.video_fps, sampling)
    if not indices:
        raise MediaError(
            f"{source.path}: no frames between start_time {sampling.start_time} s and end_time "
            f"{sampling.end_time} s (the video has {source.num_frames} frames at {source.video_fps:g} fps)"
        )
    height, width = source.frame_size(indices[0])
    keys = [source.key_of_index(i) for i in indices]
    return VideoPlan(str(source.path), height, width, timestamps, keys, source)


def _plan_frame_list(frames: Sequence, timestamps: Sequence[float] | None, sampling: VideoSampling) -> VideoPlan:
    if len(frames) == 0:
        raise MediaError("a video given as a list of frames has no frames")
    if timestamps is not None and len(timestamps) != len(frames):
        raise MediaError(f"a video given as {len(frames)} frames has {len(timestamps)} timestamps")
    source = ListSource(frames)
    height, width = source.frame_size(0)
    labels = [float(t) for t in timestamps] if timestamps is not None else []
    return VideoPlan(source.path, height, width, labels, list(range(len(frames))), source)


class TqdmProgress:
    """A progress callback drawing one tqdm bar (on stderr) per decoded video.

    Example::

        processor(conversation, progress=TqdmProgress("decoding"))
    """

    def __init__(self, desc: str = "decoding video", **tqdm_kwargs: Any):
        self.desc = desc
        self.tqdm_kwargs = tqdm_kwargs
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self._bar is None or done < self._bar.n or total != self._bar.total:
            self.close()  # a new video
            self._bar = tqdm(total=total, desc=self.desc, unit="pkt", leave=False, **self.tqdm_kwargs)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
