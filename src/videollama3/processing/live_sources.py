"""Frame sources for live sessions: iterators of ``(frame, t)`` — an (H, W, 3) uint8 RGB array and its stream
time in seconds — sampled at a given fps (the checkpoint's, ``processor.fps``, 1 by default).

- :func:`open_file`: a video file, played at real time (``realtime=True``: frame ``t`` is yielded at wall
  time ``t`` after the first) or as fast as it decodes;
- :func:`open_camera`: a capture device through PyAV's platform input (``v4l2`` on Linux, ``avfoundation``
  on macOS, ``dshow`` on Windows; ``format=`` overrides);
- :func:`open_url`: a network stream (RTSP, HLS, HTTP...) with open and read timeouts;
- :class:`PushSource`: frames a program pushes (``push(frame, t)``, ``close()``), thread-safe, bounded.

Sampling rule (:class:`FpsSampler`): a frame's stream time is its ``pts * time_base`` minus the first
decoded frame's (so the first frame is at 0); the source keeps the **first frame at or after each boundary
k / fps** (k = 0, 1, 2, ...) and skips the others. A frame that passes several boundaries at once (a gap in
the stream) counts for all of them: the next boundary is the first one after it. Kept frames carry their
own time (not the boundary), so times are strictly increasing, as ``LiveSession.add_frame`` requires. A
frame without a timestamp (some live inputs) takes the wall time since the first frame; a frame whose time
does not increase is skipped.

Every source is an iterator with ``stop()`` (thread-safe: the iteration ends at the next frame or wait)
and ``close()``, and a context manager. Errors are :class:`~videollama3.errors.MediaError` (or
``MediaNotFoundError``) naming the input and the reason: a missing file or device, an unreadable stream,
no video stream, a connection refused, a timeout.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MediaError, MediaNotFoundError

DEFAULT_TIMEOUT = 10.0  # seconds to open a camera or a network stream, and to wait for its next packet
_EPS = 1e-9


class FpsSampler:
    """Keeps the first frame at or after each k / fps boundary of stream time (see the module docstring)."""

    def __init__(self, fps: float | None):
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
            raise MediaError(f"fps must be a positive number, got {fps!r}")
        if fps is not None and not math.isfinite(fps):
            raise MediaError(f"fps must be finite, got {fps!r}")
        self.fps = None if fps is None else float(fps)
        self.next_boundary = 0  # k of the next boundary
        self.last: float | None = None

    def keep(self, t: float) -> bool:
        """Whether the frame at relative stream time ``t`` is kept."""
        if self.last is not None and t <= self.last:
            return False  # non-increasing times (B-frame reorder glitches, duplicated pts)
        if self.fps is None:
            self.last = t
            return True
        if t + _EPS < self.next_boundary / self.fps:
            return False
        self.last = t
        self.next_boundary = math.floor(t * self.fps + _EPS) + 1
        return True


class LiveSource:
    """Base class: an iterator of ``(frame, t)`` with ``stop()`` and ``close()``."""

    name: str = "<source>"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._iterator: Iterator[tuple[np.ndarray, float]] | None = None

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        return self

    def __next__(self) -> tuple[np.ndarray, float]:
        if self._iterator is None:
            self._iterator = self._frames()
        return next(self._iterator)

    def _frames(self) -> Iterator[tuple[np.ndarray, float]]:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the iteration to end (from any thread): it ends at its next frame or wait."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """End the iteration and release the input (from the iterating thread)."""
        self._stop.set()
        if self._iterator is not None:
            self._iterator.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AVSource(LiveSource):
    """Frames of the first video stream of a PyAV container (a file, a device or a URL), sampled at ``fps``.

    ``realtime``: sleep so that the frame at stream time ``t`` is yielded ``t`` seconds after the first
    (for files; live inputs come at their own pace). The container is opened at once (errors are raised
    by the constructor) and closed when the iteration ends, fails, or is closed.
    """

    def __init__(
        self,
        target: str,
        *,
        name: str | None = None,
        fps: float | None = 1.0,
        realtime: bool = False,
        format: str | None = None,
        options: dict[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        kind: str = "video",
    ):
        super().__init__()
        self.name = name or target
        self.kind = kind
        self.sampler = FpsSampler(fps)
        self.realtime = bool(realtime)
        self.container = _open_container(target, self.name, kind, format=format, options=options, timeout=timeout)
        try:
            videos = self.container.streams.video
            if not videos:
                raise MediaError(f"{self.name}: the {kind} has no video stream")
            self.stream = videos[0]
            self.stream.thread_type = "AUTO"
        except BaseException:
            self.container.close()
            raise

    def _frames(self) -> Iterator[tuple[np.ndarray, float]]:
        import av

        first: Fraction | float | None = None
        wall_start: float | None = None
        try:
            try:
                decoded = self.container.decode(self.stream)
                for frame in decoded:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if wall_start is None:
                        wall_start = now
                    if frame.pts is not None and frame.time_base is not None:
                        stamp: Fraction | float = frame.pts * frame.time_base
                    else:  # no timestamp: wall time since the first frame
                        stamp = now - wall_start
                    if first is None:
                        first = stamp
                    t = float(stamp - first)
                    if not self.sampler.keep(t):
                        continue
                    image = frame.to_ndarray(format="rgb24")
                    if self.realtime and self._stop.wait(max(0.0, wall_start + t - time.monotonic())):
                        return
                    yield image, t
            except av.error.ExitError as exc:  # the interrupt callback fired: the read timed out
                raise MediaError(f"{self.name}: timed out waiting for the {self.kind}'s next frame ({exc})") from exc
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                raise MediaError(f"{self.name}: cannot decode the {self.kind}: {exc}") from exc
        finally:
            self.container.close()

    def close(self) -> None:
        super().close()
        if self._iterator is None:  # never iterated: the generator's `finally` will not run
            self.container.close()


def open_file(path: str | os.PathLike, fps: float | None = 1.0, realtime: bool = False) -> AVSource:
    """A video file sampled at ``fps``, played at real time (``realtime``) or as fast as it decodes."""
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"{path}: no such video file")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a video file")
    return AVSource(str(path), name=str(path), fps=fps, realtime=realtime, kind="video file")


def camera_format() -> str:
    """PyAV's capture input for this platform: v4l2 (Linux), avfoundation (macOS), dshow (Windows)."""
    if sys.platform.startswith("linux"):
        return "v4l2"
    if sys.platform == "darwin":
        return "avfoundation"
    if sys.platform.startswith("win"):
        return "dshow"
    raise MediaError(f"no known camera input for platform {sys.platform!r}: pass the capture format explicitly")


def open_camera(
    device: str | int = 0,
    fps: float | None = 1.0,
    format: str | None = None,
    options: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AVSource:
    """A camera or capture device: ``device`` as the platform's input names it (Linux: ``/dev/video0``, or
    ``0`` for it; macOS: ``"0"`` or a device name; Windows: ``"video=Integrated Camera"``)."""
    format = format or camera_format()
    device = str(device)
    if format in ("v4l2", "video4linux2"):
        if device.isdigit():
            device = f"/dev/video{device}"
        if not os.path.exists(device):
            raise MediaNotFoundError(f"camera {device}: not found (no such capture device)")
    elif format == "dshow" and not device.startswith(("video=", "audio=")):
        device = f"video={device}"
    return AVSource(
        device,
        name=f"camera {device}",
        fps=fps,
        format=format,
        options=options,
        timeout=timeout,
        kind="camera",
    )


def open_url(
    url: str, fps: float | None = 1.0, options: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> AVSource:
    """A network stream (``rtsp://``, ``rtmp://``, ``http(s)://`` incl. HLS ``.m3u8``, ``udp://``...), with
    ``timeout`` seconds to connect and to wait for each packet (PyAV's interrupt callback plus the
    protocols' own socket timeouts, in microseconds)."""
    if not isinstance(url, str) or "://" not in url:
        raise MediaError(f"{url!r}: not a stream URL (expected e.g. rtsp://host/path or https://host/live.m3u8)")
    if not timeout > 0:
        raise MediaError(f"{url}: the timeout must be > 0 seconds, got {timeout!r}")
    micros = str(int(timeout * 1_000_000))
    scheme = url.split("://", 1)[0].lower()
    defaults: dict[str, str] = {"rw_timeout": micros}
    if scheme in ("rtsp", "rtsps"):
        defaults.update(timeout=micros, rtsp_transport="tcp")
    elif scheme in ("http", "https", "tcp", "rtmp"):
        defaults.update(timeout=micros)
    return AVSource(url, name=url, fps=fps, options={**defaults, **(options or {})}, timeout=timeout, kind="stream")


def _open_container(
    target: str,
    name: str,
    kind: str,
    format: str | None = None,
    options: dict[str, str] | None = None,
    timeout: float | tuple[float, float] | None = None,
):
    import av

    started = time.monotonic()
    try:
        return av.open(target, format=format, options=options or {}, timeout=timeout, metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise MediaNotFoundError(f"{name}: not found ({exc.strerror or exc})") from exc
    except av.error.ExitError as exc:
        raise MediaError(f"{name}: timed out after {timeout} s opening the {kind}") from exc
    except av.error.ConnectionRefusedError as exc:
        raise MediaError(f"{name}: connection refused (nothing serves this {kind})") from exc
    except av.error.FFmpegError as exc:
        limit = timeout[0] if isinstance(timeout, tuple) else timeout
        if limit is not None and time.monotonic() - started >= 0.9 * limit:  # RTSP reports a timeout as invalid data
            raise MediaError(f"{name}: timed out after {limit} s opening the {kind} ({exc})") from exc
        raise MediaError(f"{name}: cannot open the {kind}: {exc}") from exc
    except ValueError as exc:  # e.g. an input format this PyAV build lacks
        raise MediaError(f"{name}: cannot open the {kind} with format {format!r}: {exc}") from exc


class PushSource(LiveSource):
    """Frames pushed by a program: ``push(frame, t)`` from any thread, ``close()`` when done; iterating it
    (one consumer) yields them in order. The queue holds at most ``maxsize`` frames: ``push`` waits for
    room up to ``timeout`` seconds (None: as long as it takes), then raises. ``fps``: sample the pushed
    frames by the same rule as the other sources (None: keep every frame). ``poll`` bounds each wait of the
    consumer, so that ``stop()`` is seen promptly."""

    _END = object()

    def __init__(self, maxsize: int = 8, fps: float | None = None, name: str = "pushed frames", poll: float = 0.1):
        super().__init__()
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise MediaError(f"PushSource: maxsize must be a positive integer, got {maxsize!r}")
        self.name = name
        self.sampler = FpsSampler(fps)
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._closed = False
        self._last_t: float | None = None
        self._poll = poll

    def push(self, frame: Any, t: float, timeout: float | None = None) -> None:
        """Queue ``frame`` ((H, W, 3) uint8 array or PIL image) at stream time ``t`` (seconds, increasing)."""
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise MediaError(f"{self.name}: t must be a finite number of seconds, got {t!r}")
        frame = _as_rgb_array(frame, t, self.name)
        with self._lock:
            if self._closed:
                raise MediaError(f"{self.name}: push after close()")
            if self._last_t is not None and t <= self._last_t:
                raise MediaError(f"{self.name}: frames must come in increasing time: t={t} after t={self._last_t}")
            previous, self._last_t = self._last_t, float(t)
        try:
            self._queue.put((frame, float(t)), timeout=timeout)
        except queue.Full:
            with self._lock:  # the refused frame does not count: the same time may be pushed again
                if self._last_t == float(t):
                    self._last_t = previous
            raise MediaError(
                f"{self.name}: the queue stayed full ({self._queue.maxsize} frames) for {timeout} s: "
                "the consumer is not keeping up"
            ) from None

    def close(self) -> None:
        """No more frames: the consumer ends after those already queued. Never blocks."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(queue.Full):  # full: the consumer sees `_closed` once the queue drains
            self._queue.put_nowait(self._END)

    def _frames(self) -> Iterator[tuple[np.ndarray, float]]:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._poll)
            except queue.Empty:
                if self._closed:
                    return
                continue
            if item is self._END:
                return
            frame, t = item
            if self.sampler.keep(t):
                yield frame, t


def _as_rgb_array(frame: Any, t: float, name: str) -> np.ndarray:
    from PIL import Image

    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if not isinstance(frame, np.ndarray):
        raise MediaError(
            f"{name}: the frame at t={t} must be an (H, W, 3) uint8 array or a PIL image, got {type(frame).__name__}"
        )
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3 or 0 in frame.shape:
        raise MediaError(
            f"{name}: the frame at t={t} must be a non-empty (H, W, 3) uint8 array, "
            f"got {frame.dtype} {tuple(frame.shape)}"
        )
    return frame


__all__ = [
    "AVSource",
    "DEFAULT_TIMEOUT",
    "FpsSampler",
    "LiveSource",
    "PushSource",
    "camera_format",
    "open_camera",
    "open_file",
    "open_url",
]
