"""Running a real server (uvicorn on a loopback port, in a background thread) for the serving tests."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import requests

# The parity fixtures in the repository (as in tests/parity_fixtures.py).
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "parity"
FIXTURE_MODEL = FIXTURES / "model"
MEDIA = FIXTURES / "media"
API_KEY = "sk-test-0123456789"
MODEL_NAME = FIXTURE_MODEL.name  # "model": the default served name is the folder's


class RunningServer:
    """``create_app(config)`` served by uvicorn on an ephemeral loopback port until :meth:`stop`."""

    def __init__(self, config, loader=None, wait_ready: bool = True):
        import pytest

        pytest.importorskip("fastapi", reason="serving needs fastapi and uvicorn (pip install fastapi uvicorn)")
        uvicorn = pytest.importorskip("uvicorn", reason="serving needs uvicorn (pip install uvicorn)")

        from videollama3.serving.app import create_app

        # Bind first, then hand the socket to uvicorn: no race for a "free" port between test workers.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config.port = self.port
        kwargs = {"loader": loader} if loader is not None else {}
        self.app = create_app(config, **kwargs)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        self._wait(lambda: self.server.started, "the server did not start")
        if wait_ready:
            self.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self):
        return self.app.state.server

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait(lambda: requests.get(f"{self.url}/health", timeout=5).status_code == 200, "model not ready", timeout)

    def _wait(self, predicate, message: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.thread.is_alive():
                raise RuntimeError("the server thread exited")
            time.sleep(0.05)
        raise TimeoutError(message)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def make_config(media_root, **overrides):
    from videollama3.serving.config import ServerConfig

    """The test servers' settings: an API key, the media root, and limits small enough to hit."""
    settings = dict(
        model=str(FIXTURE_MODEL),
        device="cpu",
        api_key=API_KEY,
        media_root=str(media_root),
        max_body_bytes=2 << 20,
        max_media_bytes=1 << 20,
        max_video_seconds=10,
        max_frames=32,
        max_new_tokens=64,
        request_timeout=60,
        preprocess_workers=2,
    )
    settings.update(overrides)
    return ServerConfig(**settings)


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def image_message(url: str, text: str = "What is in the image?") -> dict:
    return {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
    }


def video_message(url: str, text: str = "What happens in the video?", **sampling) -> dict:
    return {
        "role": "user",
        "content": [{"type": "video_url", "video_url": {"url": url, **sampling}}, {"type": "text", "text": text}],
    }
