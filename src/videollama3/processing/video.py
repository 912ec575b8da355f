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
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import MediaError, MediaNotFoundError
from .image import ImageReader, open_image_file, resize
from .parallel import decoder_threads

if TYPE_CHECKING:
    import av

DEFAULT_FPS = 1
DEFAULT_MAX_FRAMES = 180
GIF_FPS = 25
FOLDER_FPS = 3
# Split decoding into separately seeked runs only when at least this many packets can be skipped: a
# split costs a decoder drain and a seek, worth a few frames of decoding.
MIN_SKIPPED_PACKETS = 16
_AV_TIME_BASE = 1_000_000


# progress(done, total), in decoded packets (streams) or frames (GIFs, folders).
ProgressCallback = Callable[[int, int], None]


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
        return round(seconds * _AV_TIME_BASE)
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    us = int(whole) * _AV_TIME_BASE + int((frac + "000000")[:6])
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
    source: _FrameSource = field(repr=False)

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
            return _plan_index_sampled(_FolderSource(path), sampling)
        if path.stat().st_size == 0:
            raise MediaError(f"{path}: empty file")
        if path.suffix.lower() == ".gif":
            return _plan_index_sampled(_GifSource(path), sampling)
        source = _StreamSource(path)
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


def _plan_fps_filter(source: _StreamSource, sampling: VideoSampling) -> VideoPlan:
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
    offset = _rescale_near(offset_us, Fraction(1, _AV_TIME_BASE), tb)
    pts = source.frame_pts
    shifted = [p + offset for p in pts]
    first, stop = 0, len(pts)
    end_shifted = shifted[-1] + source.last_duration if pts else 0
    if do_trim:
        # The trim filter of accurate seeking: drop frames before 0, then end at the first frame at or past
        # first_kept + duration (which also becomes the end-of-stream time).
        first = bisect_right(shifted, -1)  # first index with shifted >= 0
        duration_tb = _rescale_near(_parse_time_us(duration), Fraction(1, _AV_TIME_BASE), tb)
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


def _plan_index_sampled(source: _FrameSource, sampling: VideoSampling) -> VideoPlan:
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
    source = _ListSource(frames)
    height, width = source.frame_size(0)
    labels = [float(t) for t in timestamps] if timestamps is not None else []
    return VideoPlan(source.path, height, width, labels, list(range(len(frames))), source)


# --------------------------------------------------------------------------------------------------
# Frame sources
# --------------------------------------------------------------------------------------------------


class _FrameSource:
    """Decodes frames identified by keys."""

    path: Any
    num_frames: int
    video_fps: float

    def key_of_index(self, index: int):
        return index

    def frame_size(self, index: int) -> tuple[int, int]:
        raise NotImplementedError

    def decode(
        self, keys: list, progress: ProgressCallback | None, threads: int | None = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield (key, (H, W, 3) uint8 RGB) for each key, in the given (ascending) order.

        ``threads``: decoder threads (None: the default, :func:`decoder_threads`), where it applies."""
        raise NotImplementedError

    def partition(self, keys: list, parts: int) -> list[list]:
        """Split ascending ``keys`` into groups that decode independently (default: one group)."""
        return [keys]


class _ListSource(_FrameSource):
    def __init__(self, frames: Sequence):
        self.frames = frames
        self.path = f"<{len(frames)} frames>"
        self.num_frames = len(frames)

    def frame_size(self, index: int) -> tuple[int, int]:
        reader = ImageReader(self.frames[index])
        return reader.height, reader.width

    def decode(self, keys, progress, threads=None):
        for done, key in enumerate(keys, 1):
            yield key, ImageReader(self.frames[key]).read()
            if progress is not None:
                progress(done, len(keys))


class _FolderSource(_FrameSource):
    """A folder of frame images, sorted by file name, taken as 3 fps."""

    def __init__(self, path: Path):
        self.path = path
        extensions = set(Image.registered_extensions())
        self.files = sorted(
            f
            for f in os.listdir(path)
            if not f.startswith(".") and Path(f).suffix.lower() in extensions and (path / f).is_file()
        )
        if not self.files:
            raise MediaError(f"{path}: the folder holds no image files to use as video frames")
        self.num_frames = len(self.files)
        self.video_fps = FOLDER_FPS

    def frame_size(self, index: int) -> tuple[int, int]:
        reader = ImageReader(self.path / self.files[index])
        return reader.height, reader.width

    def decode(self, keys, progress, threads=None):
        for done, key in enumerate(keys, 1):
            yield key, ImageReader(self.path / self.files[key]).read()
            if progress is not None:
                progress(done, len(keys))


class _GifSource(_FrameSource):
    """An animated GIF, taken as 25 fps; frames are the composited canvases, alpha dropped."""

    def __init__(self, path: Path):
        self.path = path
        self.video_fps = GIF_FPS
        with open_image_file(path) as image:  # header checks: readable, not a decompression bomb
            self.size = (image.height, image.width)
            self.num_frames = getattr(image, "n_frames", 1)

    def frame_size(self, index: int) -> tuple[int, int]:
        return self.size

    def decode(self, keys, progress, threads=None):
        try:
            with Image.open(self.path) as image:
                for done, key in enumerate(keys, 1):
                    image.seek(key)  # keys ascend: Pillow decodes forward from the current frame
                    yield key, np.asarray(image.convert("RGB"))
                    if progress is not None:
                        progress(done, len(keys))
        except (OSError, EOFError, ValueError) as exc:
            raise MediaError(f"{self.path}: cannot decode the GIF: {exc}") from exc


@dataclass
class _Run:
    """Packets ``start..end`` (decode order) to decode after seeking to keyframe ``start``."""

    start: int
    end: int
    targets: set[int]


class _StreamSource(_FrameSource):
    """A video file read with PyAV.

    Construction demuxes the video stream once, reading packets but decoding nothing except the first
    frame, to learn every frame's timestamp, the keyframes, the frame size and the rotation.
    """

    def __init__(self, path: Path):
        self.path = path
        container = _open_container(path)
        try:
            stream = _video_stream(container, path)
            self.stream_index = stream.index
            self.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.video_fps = float(rate) if rate else 25.0
            self.container_start_us = container.start_time or 0
            self.stream_start = float(stream.start_time * self.time_base) if stream.start_time is not None else 0.0
            duration_us = container.duration
            first_frame = self._scan(container, stream)
        finally:
            container.close()

        order = sorted((p, i) for i, (p, s) in enumerate(zip(self.packet_pts, self.packet_shown)) if s)
        if not order:
            raise MediaError(f"{path}: the video stream has no frames")
        self.frame_pts = [p for p, _ in order]  # presentation order
        self.packet_of_pts = {p: i for p, i in order}
        self.num_frames = len(order)
        # End of the last frame = its pts + its duration: what ffmpeg's decoder reports at end of stream.
        gap = self.frame_pts[-1] - self.frame_pts[-2] if len(order) > 1 else 0
        nominal = max(round(1 / (self.video_fps * self.time_base)), 1)
        self.last_duration = self.packet_duration[order[-1][1]] or gap or nominal
        end = (self.frame_pts[-1] + self.last_duration) * self.time_base
        self.format_duration = duration_us / _AV_TIME_BASE if duration_us else float(end)
        if first_frame is None:
            raise MediaError(f"{path}: no decodable video frame (truncated or corrupt file?)")
        self.rotation = _clockwise_rotation(first_frame)
        self.height, self.width = first_frame.height, first_frame.width
        if self.rotation in (90, 270):
            self.height, self.width = self.width, self.height

    def _scan(self, container, stream) -> av.VideoFrame | None:
        """Record every packet (decode order); decode only until the first frame comes out."""
        import av

        self.packet_pts: list[int | None] = []
        self.packet_dts: list[int | None] = []
        self.packet_key: list[bool] = []
        self.packet_shown: list[bool] = []  # False for packets an edit list discards (decoded, never shown)
        self.packet_duration: list[int] = []
        self.packet_disposable: list[bool] = []  # no other picture references it: skippable if unwanted
        nal_length_size = _avcc_nal_length_size(stream.codec_context)
        first_frame = None
        codec = stream.codec_context
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                self.packet_pts.append(packet.pts)
                self.packet_dts.append(packet.dts)
                self.packet_key.append(packet.is_keyframe)
                self.packet_shown.append(not packet.is_discard)
                self.packet_duration.append(packet.duration or 0)
                self.packet_disposable.append(
                    nal_length_size is not None and _is_h264_non_reference(memoryview(packet), nal_length_size)
                )
                if first_frame is None:
                    frames = _decode_packet(codec, packet)
                    first_frame = frames[0] if frames else None
            if first_frame is None and self.packet_pts:
                frames = _decode_packet(codec, None)
                first_frame = frames[0] if frames else None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{self.path}: cannot read the video stream (truncated or corrupt?): {exc}") from exc
        if any(p is None for p, s in zip(self.packet_pts, self.packet_shown) if s):
            # Frame times would only be known after decoding everything; containers that matter carry them.
            raise MediaError(f"{self.path}: the video packets carry no timestamps; remux the file (e.g. to MP4)")
        self.keyframes = [i for i, k in enumerate(self.packet_key) if k]
        self.index_of_packet = {(p, d): i for i, (p, d) in enumerate(zip(self.packet_pts, self.packet_dts))}
        return first_frame

    def key_of_index(self, index: int):
        return self.frame_pts[index]

    def frame_size(self, index: int) -> tuple[int, int]:
        return self.height, self.width

    # -- which packets to decode ---------------------------------------------------------------------

    def _keyframe_before(self, packet: int, pts: int) -> int:
        """Latest keyframe at or before ``packet`` (decode order) not shown after ``pts``; 0 if none."""
        j = bisect_right(self.keyframes, packet) - 1
        while j >= 0 and self.packet_pts[self.keyframes[j]] > pts:  # open GOP: frames shown before the I frame
            j -= 1
        return self.keyframes[j] if j >= 0 else 0

    def runs(self, keys: list[int]) -> list[_Run]:
        """Group the wanted frames (ascending pts) into runs of packets, each starting at a keyframe."""
        runs: list[_Run] = []
        for pts in keys:
            packet = self.packet_of_pts[pts]
            start = self._keyframe_before(packet, pts)
            if runs and start <= runs[-1].end + MIN_SKIPPED_PACKETS:
                runs[-1].start = min(runs[-1].start, start)
                runs[-1].end = max(runs[-1].end, packet)
                runs[-1].targets.add(pts)
            else:
                runs.append(_Run(start, packet, {pts}))
        return runs

    # -- decoding --------------------------------------------------------------------------------------

    def partition(self, keys: list[int], parts: int) -> list[list[int]]:
        """Split ascending frame pts into up to ``parts`` groups of similar decoding work (packets from each
        frame's keyframe to it) that share no packet, cutting only where a new keyframe starts."""
        if parts <= 1 or len(keys) < 2:
            return [keys]
        spans = []  # (first packet to decode, packet of the frame) per key
        for pts in keys:
            packet = self.packet_of_pts[pts]
            spans.append((self._keyframe_before(packet, pts), packet))
        cuts, reach = [], -1
        for i, (start, end) in enumerate(spans):
            if i > 0 and start > reach:  # keys[i:] need nothing that keys[:i] decode
                cuts.append(i)
            reach = max(reach, end)
        if not cuts:
            return [keys]
        first = spans[0][0]
        share = (reach - first + 1) / parts
        chosen = sorted({min(cuts, key=lambda i: abs(spans[i][0] - first - j * share)) for j in range(1, parts)})
        bounds = [0, *chosen, len(keys)]
        return [keys[a:b] for a, b in zip(bounds, bounds[1:]) if a < b]

    def decode(self, keys, progress, threads=None):
        runs = self.runs(keys)
        total = sum(r.end - r.start + 1 for r in runs)
        done = 0
        container = _open_container(self.path)
        try:
            stream = container.streams[self.stream_index]
            # Frame + slice threads. One core is left to the caller, who resizes frames while we decode
            # (on 2 cores a second decoder thread only competes with the resizing).
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = decoder_threads() if threads is None else threads
            codec = stream.codec_context
            packets: Iterator = container.demux(stream)
            position = 0  # decode-order index of the next packet ``packets`` yields
            for run in runs:
                if run.start < position or run.start - position > MIN_SKIPPED_PACKETS:
                    packets, position = self._seek(container, stream, run.start)
                for packet in packets:
                    if packet.size == 0:
                        continue
                    position += 1
                    if position - 1 < run.start:
                        continue  # before the run's keyframe: skipped without decoding
                    # A picture nothing refers to is decoded only if it is wanted.
                    if packet.pts in run.targets or not self.packet_disposable[position - 1]:
                        for frame in _decode_packet(codec, packet):
                            if frame.pts in run.targets:
                                run.targets.discard(frame.pts)
                                yield frame.pts, self._to_rgb(frame)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    if position > run.end:
                        break
                # Drain: frames still held by the decoder (reordering, frame threads) come out now.
                for frame in _decode_packet(codec, None):
                    if frame.pts in run.targets:
                        run.targets.discard(frame.pts)
                        yield frame.pts, self._to_rgb(frame)
                codec.flush_buffers()
                if run.targets:
                    t = float(min(run.targets) * self.time_base)
                    raise MediaError(f"{self.path}: could not decode the frame at {t:.3f} s (truncated or corrupt?)")
        finally:
            container.close()

    def _seek(self, container, stream, index: int) -> tuple[Iterator, int]:
        """Position the demuxer at or before packet ``index``: (packet iterator, its decode-order position)."""
        import av

        if index > 0:
            # The demuxer lands on the keyframe or on an earlier one (both fine: we skip up to ``index``).
            target = self.packet_dts[index] if self.packet_dts[index] is not None else self.packet_pts[index]
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                packets = container.demux(stream)
                for packet in packets:
                    if packet.size == 0:
                        continue
                    landed = self.index_of_packet.get((packet.pts, packet.dts))
                    if landed is not None and landed <= index:
                        return _chain(packet, packets), landed
                    break
            except av.error.FFmpegError:
                pass
        # Back to the first packet (also the fallback when a seek lands after the keyframe).
        container.seek(self.packet_dts[0] if self.packet_dts[0] is not None else 0, stream=stream, backward=True)
        packets = container.demux(stream)
        for packet in packets:
            if packet.size == 0:
                continue
            if self.index_of_packet.get((packet.pts, packet.dts)) == 0:
                return _chain(packet, packets), 0
            break
        raise MediaError(f"{self.path}: seeking in the video failed")

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # swscale's yuv -> rgb24 conversion, identical to what the ffmpeg command line pipes to the reference.
        rgb = frame.to_ndarray(format="rgb24")
        if self.rotation:
            # ffmpeg applies the display matrix by default (transpose=clock / cclock, or a half turn).
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-(self.rotation // 90)))
        return rgb


def _avcc_nal_length_size(codec) -> int | None:
    """Bytes of the NAL length prefix of an H.264 stream stored as length-prefixed NAL units (MP4, MOV, MKV:
    the ``avcC`` record in the extradata); None for other codecs and for Annex B streams (start codes)."""
    extradata = codec.extradata
    if codec.name != "h264" or not extradata or len(extradata) < 7 or extradata[0] != 1:
        return None
    return (extradata[4] & 0x03) + 1


def _is_h264_non_reference(data: memoryview, nal_length_size: int) -> bool:
    """True when the packet is a coded picture that no other picture uses for prediction: every NAL unit has
    ``nal_ref_idc`` 0 and there is at least one slice (SEI and access-unit delimiters also have 0; parameter
    sets and IDR slices never do). What the decoder's ``skip_frame=nonref`` leaves out, known before decoding."""
    offset, slices, size = 0, 0, len(data)
    while offset + nal_length_size < size:
        length = int.from_bytes(data[offset : offset + nal_length_size], "big")
        header = data[offset + nal_length_size]
        if header & 0x60:  # nal_ref_idc != 0: a reference picture or a parameter set
            return False
        if header & 0x1F in (1, 2, 3, 4):  # coded slice (or slice data partition) of a non-IDR picture
            slices += 1
        offset += nal_length_size + max(length, 1)
    return slices > 0


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _clockwise_rotation(frame: av.VideoFrame) -> int:
    """The clockwise quarter turn ffmpeg applies for the frame's display matrix (0, 90, 180 or 270)."""
    try:
        rotation = frame.rotation  # counter-clockwise degrees of the display matrix
    except (AttributeError, ValueError):
        return 0
    turn = round(-rotation) % 360 if rotation else 0
    return turn if turn in (90, 180, 270) else 0


def _decode_packet(codec, packet) -> list[av.VideoFrame]:
    import av

    try:
        return codec.decode(packet)
    except av.error.EOFError:
        return []
    except av.error.InvalidDataError:
        # ffmpeg logs corrupt packets and goes on; frames that depended on them are reported missing.
        return []


def _open_container(path: Path):
    import av  # imported on first use: importing videollama3 (images, text, the model) does not need PyAV

    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable video ({exc})") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise MediaError(f"{path}: no video stream (found: {', '.join(kinds)})")
    return container.streams.video[0]


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
