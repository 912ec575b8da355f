"""Live frame sources (processing/live_sources.py): fps sampling of files played fast and at real time,
pushed frames, and the errors of missing / unreadable / unreachable inputs."""

from __future__ import annotations

import socket
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from vl3_media import make_video

from videollama3.errors import MediaError, MediaNotFoundError
from videollama3.processing.live_sources import (
    FpsSampler,
    PushSource,
    open_camera,
    open_file,
    open_url,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s at 10 fps, 48x64."""
    return make_video(tmp_path_factory.mktemp("live") / "clip.mp4", num_frames=30, fps=10)


def _times(source) -> list[float]:
    with source:
        return [round(t, 6) for _, t in source]


@pytest.mark.parametrize(("fps", "expected"), [(1, [0, 1, 2]), (2, [0, 0.5, 1, 1.5, 2, 2.5])])
def test_file_fast_sampled_times(clip, fps, expected):
    source = open_file(clip, fps=fps)
    frames = list(source)
    assert [round(t, 6) for _, t in frames] == expected
    for frame, _ in frames:
        assert frame.dtype == np.uint8 and frame.shape == (48, 64, 3)


def test_file_rule_first_frame_at_or_after_each_boundary(tmp_path):
    # 7 fps: frame times i/7 fall between the 2 fps boundaries k/2 (except integers).
    path = make_video(tmp_path / "seven.mp4", num_frames=21, fps=7)
    got = _times(open_file(path, fps=2))
    times = [i / 7 for i in range(21)]
    expected = [next(t for t in times if t >= k / 2 - 1e-9) for k in range(6)]
    assert got == [round(t, 6) for t in expected]


def test_file_realtime_paces_frames(tmp_path):
    path = make_video(tmp_path / "short.mp4", num_frames=12, fps=10)  # 1.2 s
    start = time.monotonic()
    seen = []
    for _, t in open_file(path, fps=2, realtime=True):
        seen.append((round(t, 6), time.monotonic() - start))
    assert [t for t, _ in seen] == [0, 0.5, 1.0]
    for t, wall in seen:
        assert wall >= t - 0.05, (t, wall)  # never early
    assert seen[-1][1] < 1.0 + 1.0  # and not much late


def test_file_realtime_stop_is_prompt(clip):
    source = open_file(clip, fps=1, realtime=True)
    it = iter(source)
    next(it)  # t = 0
    threading.Timer(0.1, source.stop).start()
    start = time.monotonic()
    assert list(it) == []  # the wait for t = 1 ends at stop()
    assert time.monotonic() - start < 0.8
    source.close()


def test_sampler_gap_and_non_increasing_times():
    sampler = FpsSampler(1)
    kept = [t for t in [0, 0.2, 3.4, 3.4, 3.5, 4.0, 3.9, 4.99, 5.0] if sampler.keep(t)]
    assert kept == [0, 3.4, 4.0, 5.0]
    everything = FpsSampler(None)
    assert [t for t in [0, 0.1, 0.1, 0.2] if everything.keep(t)] == [0, 0.1, 0.2]
    for bad in (0, -1, float("nan"), float("inf"), "1"):
        with pytest.raises(MediaError, match="fps must be"):
            FpsSampler(bad)


def test_push_source_from_another_thread():
    source = PushSource(maxsize=2)
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(6)]

    def produce():
        for i, frame in enumerate(frames):
            source.push(frame, i * 0.25, timeout=5)
        source.close()

    thread = threading.Thread(target=produce)
    thread.start()
    got = list(source)
    thread.join(5)
    assert [t for _, t in got] == [0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert all(int(f[0, 0, 0]) == i for i, (f, _) in enumerate(got))


def test_push_source_sampling_and_errors():
    source = PushSource(maxsize=1, fps=1)
    frame = np.zeros((4, 4, 3), np.uint8)
    source.push(frame, 0.0)
    with pytest.raises(MediaError, match="queue stayed full"):
        source.push(frame, 0.5, timeout=0.05)
    with pytest.raises(MediaError, match="increasing time"):
        source.push(frame, 0.0)
    with pytest.raises(MediaError, match=r"\(H, W, 3\) uint8"):
        source.push(np.zeros((4, 4), np.uint8), 2.0)
    with pytest.raises(MediaError, match=r"\(H, W, 3\) uint8"):
        source.push("frame", 2.0)
    with pytest.raises(MediaError, match="finite number"):
        source.push(frame, float("nan"))
    it = iter(source)
    assert next(it)[1] == 0.0
    source.push(frame, 0.5, timeout=5)  # the refused time may be pushed again; before the 1 s boundary: skipped
    source.close()  # never blocks (the queue is full); the frames queued are still delivered
    assert [t for _, t in it] == []
    sampled = PushSource(maxsize=8, fps=1)
    for t in (0.0, 0.4, 0.9, 1.1, 1.5, 3.2):
        sampled.push(frame, t, timeout=5)
    sampled.close()
    assert [t for _, t in sampled] == [0.0, 1.1, 3.2]
    with pytest.raises(MediaError, match="after close"):
        source.push(frame, 5.0)


def test_push_source_stop_ends_an_idle_consumer():
    source = PushSource()
    threading.Timer(0.1, source.stop).start()
    start = time.monotonic()
    assert list(source) == []
    assert time.monotonic() - start < 1.0


def test_missing_file(tmp_path):
    with pytest.raises(MediaNotFoundError, match="nope.mp4: no such video file"):
        open_file(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="is a folder"):
        open_file(tmp_path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(MediaError, match="notes.mp4: cannot open the video file"):
        open_file(path)


def test_file_without_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    with pytest.raises(MediaError, match="sound.wav: the video file has no video stream"):
        open_file(path)


def test_url_nothing_listening_fails_fast():
    start = time.monotonic()
    with pytest.raises(MediaError, match=r"rtsp://127\.0\.0\.1:9/x"):
        open_url("rtsp://127.0.0.1:9/x", timeout=1)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_url_silent_server_times_out(scheme):
    with socket.socket() as server:  # accepts connections (the backlog does) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"{scheme}://127.0.0.1:{server.getsockname()[1]}/live"
        start = time.monotonic()
        with pytest.raises(MediaError, match=rf"{url}: timed out after 1 s opening the stream"):
            open_url(url, timeout=1)
        assert time.monotonic() - start < 5


def test_bad_url():
    with pytest.raises(MediaError, match="not a stream URL"):
        open_url("camera.local/stream")
    with pytest.raises(MediaError, match="timeout must be > 0"):
        open_url("rtsp://127.0.0.1:9/x", timeout=0)


def test_camera_not_found():
    with pytest.raises(MediaNotFoundError, match="camera /dev/video-nonexistent-42: not found"):
        open_camera("/dev/video-nonexistent-42", format="v4l2")
