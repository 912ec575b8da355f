"""The hardened front door: authentication, media confinement, limits, and every error status.

Every error must be OpenAI's error object with the right status, and the server must keep serving.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time

import pytest
import requests
from PIL import Image
from server_helpers import (
    API_KEY,
    FIXTURE_MODEL,
    MEDIA,
    MODEL_NAME,
    RunningServer,
    data_url,
    image_message,
    make_config,
    video_message,
)

openai = pytest.importorskip("openai", reason="the API tests use the official openai client (pip install openai)")

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post_chat(server, body: dict, headers=AUTH, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60, **kwargs)


def chat_body(*messages, **options) -> dict:
    return {"model": MODEL_NAME, "messages": list(messages), "max_tokens": 4, **options}


def assert_error(response: requests.Response, status: int, *, code=None, param=None, says=None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    if says is not None:
        assert says.lower() in error["message"].lower(), error
    return error


def assert_still_serving(server) -> None:
    response = post_chat(server, chat_body({"role": "user", "content": "Still there?"}))
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------------


def test_requests_without_the_api_key_get_401(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, {"Authorization": "Basic x"}):
        response = post_chat(server, chat_body({"role": "user", "content": "Hi"}), headers=headers)
        assert_error(response, 401, code="invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"
    assert_error(requests.get(f"{server.url}/v1/models", timeout=10), 401)
    assert_error(requests.get(f"{server.url}/stats", timeout=10), 401)
    assert_error(requests.post(f"{server.url}/v1/uploads", data=b"x", timeout=10), 401)
    # Unauthenticated clients cannot make the server parse their bodies: 401 even for garbage.
    garbage = requests.post(f"{server.url}/v1/chat/completions", data=b"{not json", timeout=10)
    assert_error(garbage, 401)


def test_openai_client_with_a_wrong_key_gets_authentication_error(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 401


def test_page_health_and_schema_are_public(server):
    for path in ("/", "/health", "/openapi.json", "/static/app.js", "/static/style.css"):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    page = requests.get(f"{server.url}/", timeout=10)
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_refuses_to_listen_beyond_loopback_without_a_key(monkeypatch, capsys):
    from videollama3.cli import main
    from videollama3.errors import ConfigError
    from videollama3.serving.app import create_app
    from videollama3.serving.config import ServerConfig

    monkeypatch.delenv("VIDEOLLAMA3_API_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(ConfigError, match="API key"):
            create_app(ServerConfig(model=str(FIXTURE_MODEL), host=host))
    assert main(["serve", "--model", str(FIXTURE_MODEL), "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on '0.0.0.0' without an API key" in capsys.readouterr().err
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServerConfig(model=str(FIXTURE_MODEL), host=host).validate()
    ServerConfig(model=str(FIXTURE_MODEL), host="0.0.0.0", api_key="k").validate()
    monkeypatch.setenv("VIDEOLLAMA3_API_KEY", "from-env")
    config = ServerConfig(model=str(FIXTURE_MODEL), host="0.0.0.0")
    config.validate()
    assert config.resolved_api_key() == "from-env"


# --------------------------------------------------------------------------------------------------
# 400: bad input, with the reason
# --------------------------------------------------------------------------------------------------

_BAD_INPUTS = {
    "no messages": ({"model": MODEL_NAME, "messages": []}, "messages", "at least 1"),
    "missing model": ({"messages": [{"role": "user", "content": "Hi"}]}, "model", "field required"),
    "bad role": (chat_body({"role": "robot", "content": "Hi"}), None, "messages"),
    "unknown part": (
        chat_body({"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "a.wav"}}]}),
        None,
        "audio_url",
    ),
    "temperature": (chat_body({"role": "user", "content": "Hi"}, temperature=5), "temperature", "less than or equal"),
    "max_tokens type": (chat_body({"role": "user", "content": "Hi"}, max_tokens="many"), "max_tokens", "integer"),
    "max_tokens over limit": (chat_body({"role": "user", "content": "Hi"}, max_tokens=10_000), "max_tokens", "limit"),
    "empty stop": (chat_body({"role": "user", "content": "Hi"}, stop=[""]), "stop", "empty"),
    "tools": (chat_body({"role": "user", "content": "Hi"}, tools=[{"type": "function"}]), "tools", "not supported"),
    "image token in text": (chat_body({"role": "user", "content": "look: <image>"}), "messages", "<image>"),
    "path traversal": (chat_body(image_message("../../../../etc/passwd")), None, "outside the server's media root"),
    "absolute path outside": (chat_body(image_message("/etc/hostname")), None, "outside the server's media root"),
    "symlink escape": (chat_body(image_message("escape.png")), None, "outside the server's media root"),
    "file url outside": (chat_body(image_message("file:///etc/passwd")), None, "outside"),
    "missing file": (chat_body(image_message("nope.png")), None, "no media file"),
    "remote disabled": (chat_body(image_message("http://127.0.0.1:9/a.png")), None, "--allow-remote-media"),
    "unsupported scheme": (chat_body(image_message("ftp://host/a.png")), None, "unsupported url scheme"),
    "bad base64": (chat_body(image_message("data:image/png;base64,@@@")), None, "base64"),
    "not base64": (chat_body(image_message("data:image/png,rawbytes")), None, "base64"),
    "not an image": (
        chat_body(image_message("data:image/png;base64," + "aGVsbG8gd29ybGQ=")),  # "hello world"
        "messages",
        None,
    ),
    "not a video": (chat_body(video_message("data:video/mp4;base64,aGVsbG8gd29ybGQ=")), None, "could not be read"),
    "video too long": (chat_body(video_message("video_long.mp4")), None, "limit is 10 s"),
    "too many frames": (chat_body(video_message("video_moving.mp4", max_frames=1000)), None, "max_frames"),
    "start after end": (chat_body(video_message("video_moving.mp4", start_time=4, end_time=2)), None, "after"),
    "negative fps": (chat_body(video_message("video_moving.mp4", fps=-1)), None, "greater than 0"),
    "assistant without content": (
        chat_body({"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}),
        None,
        "tool calls",
    ),
}


@pytest.mark.parametrize("case", list(_BAD_INPUTS))
def test_bad_input_gets_400_with_the_reason(server, case):
    body, param, says = _BAD_INPUTS[case]
    error = assert_error(post_chat(server, body), 400, says=says)
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param), error
    assert error["type"] == "invalid_request_error"
    # Server-side paths of the media root never leak into messages.
    assert "/tmp/" not in error["message"] and "pytest" not in error["message"]


def test_invalid_json_gets_400(server):
    response = requests.post(
        f"{server.url}/v1/chat/completions",
        data=b'{"model": "model", "messages": [',
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert_error(response, 400, says="json")


def test_trimmed_long_video_is_accepted(server):
    response = post_chat(server, chat_body(video_message("video_long.mp4", start_time=5, end_time=12)))
    assert response.status_code == 200, response.text


def test_every_error_leaves_the_server_serving(server):
    for body, _, _ in list(_BAD_INPUTS.values())[::3]:
        post_chat(server, body)
    assert_still_serving(server)


# --------------------------------------------------------------------------------------------------
# 404
# --------------------------------------------------------------------------------------------------


def test_unknown_model_gets_404(client, server):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.status_code == 404
    assert_error(
        post_chat(server, {**chat_body(), "model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
        404,
        code="model_not_found",
        param="model",
    )
    assert_error(requests.get(f"{server.url}/v1/models/gpt-4o", headers=AUTH, timeout=10), 404, code="model_not_found")


def test_unknown_route_and_upload_get_404(server):
    assert_error(requests.get(f"{server.url}/v1/embeddings", headers=AUTH, timeout=10), 404, says="no route")
    assert_error(requests.get(f"{server.url}/static/secret.py", timeout=10), 404)
    missing = "upload://upload-" + "0" * 32
    assert_error(post_chat(server, chat_body(image_message(missing))), 404, says="no upload")
    assert_error(post_chat(server, chat_body(image_message("upload://../../etc/passwd"))), 400, says="malformed")
    assert_error(requests.delete(f"{server.url}/v1/chat/completions", headers=AUTH, timeout=10), 405)


# --------------------------------------------------------------------------------------------------
# 413
# --------------------------------------------------------------------------------------------------


def test_oversized_bodies_and_media_get_413(server):
    huge_text = "x" * (3 << 20)  # the test server accepts 2 MiB bodies
    assert_error(post_chat(server, chat_body({"role": "user", "content": huge_text})), 413)

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"model": "model", "messages": [{"role": "user", "content": "'
        for _ in range(48):
            yield b"y" * (64 << 10)
        yield b'"}]}'

    chunked = requests.post(
        f"{server.url}/v1/chat/completions",
        data=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert_error(chunked, 413)
    # A data: URL whose media exceed the 1 MiB media limit, in a body under the 2 MiB body limit.
    big_media = "data:image/png;base64," + "A" * (1500 << 10)
    assert_error(post_chat(server, chat_body(image_message(big_media))), 413, says="limit")
    upload = requests.post(
        f"{server.url}/v1/uploads", data=b"\0" * ((1 << 20) + 1), headers={**AUTH, "Content-Type": "video/mp4"}
    )
    assert_error(upload, 413)
    assert_still_serving(server)


# --------------------------------------------------------------------------------------------------
# 429, 503, 504 and cancellation: servers of their own
# --------------------------------------------------------------------------------------------------


def _stream_first_chunk(server, max_tokens: int) -> requests.Response:
    body = chat_body(video_message("video_moving.mp4"), max_tokens=max_tokens, stream=True)
    response = post_chat(server, body, stream=True)
    assert response.status_code == 200, response.text
    # Keep the line iterator alive: when it is garbage-collected, urllib3 closes the connection.
    response.lines = response.iter_lines()
    next(response.lines)  # generation has started
    return response


def _wait_until(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_full_server_answers_429_and_recovers(loaded_model, media_root):
    server = RunningServer(
        make_config(media_root, max_concurrent_requests=1, max_new_tokens=4000), loader=lambda c: loaded_model
    )
    try:
        busy = _stream_first_chunk(server, max_tokens=4000)
        response = post_chat(server, chat_body({"role": "user", "content": "Me too"}))
        assert_error(response, 429, code="rate_limit_exceeded")
        assert response.headers["retry-after"]
        busy.close()  # the client leaves: its sequence is cancelled and its slot freed
        state = server.state
        _wait_until(lambda: state.in_flight == 0 and state.runtime.engine.num_running == 0)
        # Depending on timing the sequence is cancelled mid-generation or dropped before its prefill;
        # either way it never runs to the end.
        assert state.runtime.engine.stats.completed == 0
        assert_still_serving(server)
    finally:
        server.stop()


def test_503_while_the_model_loads(loaded_model, media_root):
    release = threading.Event()

    def slow_loader(config):
        release.wait(30)
        return loaded_model

    server = RunningServer(make_config(media_root), loader=slow_loader, wait_ready=False)
    try:
        health = requests.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert_error(post_chat(server, chat_body({"role": "user", "content": "Hi"})), 503, code="model_loading")
        assert_error(requests.get(f"{server.url}/v1/models", headers=AUTH, timeout=10), 503)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:
            client.models.list()
        assert info.value.status_code == 503
        release.set()
        server.wait_ready()
        assert_still_serving(server)
    finally:
        release.set()
        server.stop()


def test_503_after_a_failed_load(media_root):
    def broken_loader(config):
        raise RuntimeError("disk on fire")

    server = RunningServer(make_config(media_root), loader=broken_loader, wait_ready=False)
    try:
        _wait_until(lambda: server.state.load_error is not None)
        health = requests.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "error"
        assert_error(post_chat(server, chat_body({"role": "user", "content": "Hi"})), 503, says="disk on fire")
    finally:
        server.stop()


def test_request_timeout_gets_504_and_frees_the_batch(loaded_model, media_root):
    # Greedy decoding of the fixture model stops by itself after ~1100 tokens: the timeout must be well below
    # the time those take on a fast machine (1.0 s was not, on an idle 2-core CPU).
    server = RunningServer(
        make_config(media_root, request_timeout=0.2, max_new_tokens=4000), loader=lambda c: loaded_model
    )
    try:
        body = chat_body(video_message("video_moving.mp4"), max_tokens=4000)
        assert_error(post_chat(server, body), 504, code="request_timeout")
        with post_chat(server, {**body, "stream": True}, stream=True) as response:
            events = [line for line in response.iter_lines(decode_unicode=True) if line]
        assert any('"request_timeout"' in e for e in events) and events[-1] == "data: [DONE]"
        engine = server.state.runtime.engine
        _wait_until(lambda: engine.num_running == 0 and server.state.in_flight == 0)
        assert_still_serving(server)
    finally:
        server.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_remote_media_when_allowed(loaded_model, media_root):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(MEDIA)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = RunningServer(make_config(media_root, allow_remote_media=True), loader=lambda c: loaded_model)
    remote = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        local = post_chat(server, chat_body(image_message("image_a.png"))).json()
        fetched = post_chat(server, chat_body(image_message(f"{remote}/image_a.png")))
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["choices"][0]["message"]["content"] == local["choices"][0]["message"]["content"]
        video = post_chat(server, chat_body(video_message(f"{remote}/video_moving.mp4")))
        assert video.status_code == 200, video.text
        assert_error(post_chat(server, chat_body(image_message(f"{remote}/missing.png"))), 400, says="could not fetch")
        assert_error(post_chat(server, chat_body(image_message("http://127.0.0.1:9/x.png"))), 400, says="fetch")
    finally:
        server.stop()
        httpd.shutdown()
        httpd.server_close()


def test_data_url_video_and_gif(server, tmp_path):
    response = post_chat(server, chat_body(video_message(data_url(MEDIA / "video_static.mp4", "video/mp4"))))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens_details"]["visual_tokens"] > 0
    # A GIF sent as a video is sampled by frame index, as the reference does (the stored file keeps .gif).
    frames = [Image.new("RGB", (64, 48), (20 * k, 100, 200 - 20 * k)) for k in range(8)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    gif = post_chat(server, chat_body(video_message(data_url(tmp_path / "clip.gif", "image/gif"))))
    assert gif.status_code == 200, gif.text
