"""Fixtures of the serving tests: the fixture model loaded once, a media root, and a running server."""

from __future__ import annotations

import os
import shutil

import pytest
from server_helpers import API_KEY, FIXTURE_MODEL, MEDIA, RunningServer, make_config


@pytest.fixture(scope="session")
def loaded_model():
    """The fixture checkpoint and its processor, loaded once and shared by every test server."""
    from videollama3.serving.config import ServerConfig
    from videollama3.serving.runtime import load_model

    return load_model(ServerConfig(model=str(FIXTURE_MODEL), device="cpu"))


@pytest.fixture(scope="session")
def media_root(tmp_path_factory):
    """A media root with the fixture media, a symlink inside it and one pointing outside it."""
    root = tmp_path_factory.mktemp("media_root")
    for path in MEDIA.iterdir():
        shutil.copy(path, root / path.name)
    (root / "nested").mkdir()
    shutil.copy(MEDIA / "image_b.png", root / "nested" / "small.png")
    os.symlink(root / "image_a.png", root / "alias.png")  # stays inside: allowed
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    shutil.copy(MEDIA / "image_a.png", outside)
    os.symlink(outside, root / "escape.png")  # points outside: refused
    return root


@pytest.fixture(scope="module")
def server(loaded_model, media_root):
    """A server with an API key and small limits, for one test module."""
    pytest.importorskip("fastapi", reason="serving needs fastapi and uvicorn (pip install fastapi uvicorn)")
    running = RunningServer(make_config(media_root), loader=lambda config: loaded_model)
    yield running
    running.stop()


@pytest.fixture()
def client(server):
    openai = pytest.importorskip("openai", reason="the API tests use the official openai client (pip install openai)")
    # No retries: a test must see the first answer (the client retries 429 / 5xx by default).
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
