"""``videollama3 live``: a file played fast with a question piped on stdin, and one-line errors for bad
arguments."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from parity_fixtures import FIXTURE_MODEL
from videollama3.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s at 10 fps, 48x64, a different frame every time."""
    path = tmp_path_factory.mktemp("live_cli") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(30):
            rgb = np.full((48, 64, 3), (i * 37) % 256, np.uint8)
            rgb[:, (i * 5) % 60 : (i * 5) % 60 + 4] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _live(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videollama3", "live", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_file_played_fast_answers_a_piped_question(clip):
    result = _live(
        "--video",
        str(clip),
        "--fast",
        "--model",
        str(FIXTURE_MODEL),
        "--no-speak",
        "--max-new-tokens",
        "6",
        stdin="What is in the video?\n",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    asked = [i for i, line in enumerate(lines) if line.endswith("] > What is in the video?")]
    assert len(asked) == 1, result.stdout
    answer = "\n".join(lines[asked[0] + 1 :])
    assert answer.strip(), result.stdout  # the fixture model's answer is random text, but there is one
    assert "at 1 fps" in result.stderr


def test_file_speaks_with_stream_times(clip):
    # speak margin -inf: the model speaks after every frame, each line starts with the frame's time
    result = _live(
        "--video",
        str(clip),
        "--fast",
        "--model",
        str(FIXTURE_MODEL),
        "--speak-margin=-inf",
        "--max-speech-tokens",
        "2",
        "--fps",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for t in ("0.0", "0.5", "1.0", "2.5"):
        assert f"[{t}s] " in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one source"),
        (("--video", "a.mp4", "--url", "rtsp://127.0.0.1:9/x"), "got --video, --url"),
        (("--video", "/nonexistent/clip.mp4"), "--video /nonexistent/clip.mp4: no such file"),
        (("--url", "rtsp://127.0.0.1:9/x", "--fast"), "--fast applies to --video only"),
        (("--url", "rtsp://127.0.0.1:9/x", "--fps", "0"), "--fps must be > 0"),
        (("--camera", "0", "--max-new-tokens", "0"), "--max-new-tokens must be >= 1"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, message, capsys):
    assert main(["live", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("videollama3 live: error: "), err
    assert message in err


def test_unreachable_stream_is_a_one_line_error():
    result = _live("--url", "rtsp://127.0.0.1:9/x", "--timeout", "1", "--model", str(FIXTURE_MODEL))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "videollama3 live: error: rtsp://127.0.0.1:9/x: connection refused (nothing serves this stream)"
    )
