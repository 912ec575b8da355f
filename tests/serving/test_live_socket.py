"""``/v1/live``: the live-session WebSocket on a real server (uvicorn) with the parity fixture model.

Auth (header, query parameter, first message; refused without), a frame + question round trip, bad input
answered with an error while the session goes on, the per-message size limit, and admission.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time

import pytest
import requests
from PIL import Image
from server_helpers import API_KEY, MEDIA, MODEL_NAME, RunningServer, make_config

websockets_sync = pytest.importorskip("websockets.sync.client", reason="the live tests need websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def live_server(loaded_model, media_root):
    running = RunningServer(make_config(media_root, max_live_sessions=2), loader=lambda config: loaded_model)
    yield running
    running.stop()


def ws_url(server, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/v1/live" + query


@contextlib.contextmanager
def connect(server, query: str = "", headers=None, auth_message: bool = True):
    with websockets_sync.connect(ws_url(server, query), additional_headers=headers, open_timeout=10) as ws:
        if auth_message:
            ws.send(json.dumps({"type": "auth", "api_key": API_KEY}))
        yield ws


def recv(ws, timeout: float = 60) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def jpeg(name: str = "image_a.png", size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.open(MEDIA / name).convert("RGB").resize(size).save(buffer, format="JPEG")
    return buffer.getvalue()


def send_frame(ws, t: float, data: bytes) -> dict:
    ws.send(json.dumps({"type": "frame", "t": t}))
    ws.send(data)
    return recv(ws)


def closed_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(5):
            ws.recv(timeout=15)
    return info.value.rcvd.code


def live_stats(server) -> dict:
    return requests.get(f"{server.url}/stats", headers=AUTH, timeout=10).json()["live"]


def wait_sessions(server, count: int) -> None:
    deadline = time.monotonic() + 10
    while live_stats(server)["sessions"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_stats(server)["sessions"] == count


def test_refused_without_or_with_a_wrong_key(live_server):
    with connect(live_server, auth_message=False) as ws:
        ws.send(json.dumps({"type": "frame", "t": 0}))  # not the key
        assert closed_code(ws) == 4401
    with connect(live_server, auth_message=False) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": "sk-wrong"}))
        assert closed_code(ws) == 4401
    with connect(live_server, "?api_key=sk-wrong", auth_message=False) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": "sk-wrong"}))
        assert closed_code(ws) == 4401
    # Another WebSocket path: closed at once without the key.
    with websockets_sync.connect(live_server.url.replace("http://", "ws://") + "/v1/other", open_timeout=10) as ws:
        assert closed_code(ws) == 4401
    wait_sessions(live_server, 0)


@pytest.mark.parametrize("how", ["header", "query", "message"])
def test_the_key_in_a_header_a_query_parameter_or_the_first_message(live_server, how):
    kwargs = {
        "header": dict(headers=AUTH, auth_message=False),
        "query": dict(query=f"?api_key={API_KEY}", auth_message=False),
        "message": {},
    }[how]
    with connect(live_server, **kwargs) as ws:
        ready = recv(ws)
        assert ready["type"] == "ready" and ready["fps"] > 0 and ready["max_frame_bytes"] == 1 << 20


def test_frames_and_a_question_round_trip(live_server):
    before = live_stats(live_server)
    with connect(live_server) as ws:
        assert recv(ws)["type"] == "ready"
        first = send_frame(ws, 0.0, jpeg("image_a.png"))
        assert first["type"] == "frame" and first["t"] == 0.0
        assert 0 < first["kept_tokens"] <= first["total_tokens"]
        assert isinstance(first["spoke"], bool) and isinstance(first["text"], str)
        second = send_frame(ws, 1.0, jpeg("image_b.png"))
        assert second["type"] == "frame" and second["t"] == 1.0
        ws.send(json.dumps({"type": "ask", "text": "What do you see?", "max_tokens": 6}))
        pieces = []
        while True:
            message = recv(ws)
            if message["type"] == "answer_end":
                break
            assert message["type"] == "delta", message
            pieces.append(message["text"])
        assert "".join(pieces)
        # The conversation goes on: another frame after the answer.
        assert send_frame(ws, 2.0, jpeg("image_c.png"))["type"] == "frame"
        assert live_stats(live_server)["sessions"] == 1
    after = live_stats(live_server)
    assert after["frames"] - before["frames"] == 3 and after["answers"] - before["answers"] == 1
    wait_sessions(live_server, 0)


def test_bad_input_gets_an_error_and_the_session_goes_on(live_server):
    with connect(live_server) as ws:
        assert recv(ws)["type"] == "ready"
        ws.send(b"\xff\xd8 bytes without a frame message")
        assert "must follow" in recv(ws)["message"]
        error = send_frame(ws, 0.0, b"not an image")
        assert error["type"] == "error" and "not a readable image" in error["message"]
        ws.send("not json")
        assert recv(ws)["type"] == "error"
        ws.send(json.dumps({"type": "dance"}))
        assert "unknown message type" in recv(ws)["message"]
        ws.send(json.dumps({"type": "frame", "t": "soon"}))
        assert "finite number" in recv(ws)["message"]
        ws.send(json.dumps({"type": "ask", "text": "   "}))
        assert recv(ws)["type"] == "error"
        # Too large: max_media_bytes (1 MiB in the test config).
        error = send_frame(ws, 0.0, b"\0" * ((1 << 20) + 1))
        assert error["type"] == "error" and "limit" in error["message"]
        assert send_frame(ws, 0.0, jpeg())["type"] == "frame"
        error = send_frame(ws, 0.0, jpeg())  # not after the previous frame
        assert error["type"] == "error" and "increasing time" in error["message"]
        error = send_frame(ws, 1.0, jpeg(size=(32, 32)))  # another size than the first frame's
        assert error["type"] == "error"
        assert send_frame(ws, 1.0, jpeg())["type"] == "frame"
    wait_sessions(live_server, 0)


def test_too_many_sessions_are_refused(live_server):
    with connect(live_server) as first, connect(live_server) as second:
        assert recv(first)["type"] == "ready" and recv(second)["type"] == "ready"
        with connect(live_server) as third:
            assert closed_code(third) == 4429
    wait_sessions(live_server, 0)
    with connect(live_server) as again:
        assert recv(again)["type"] == "ready"


def test_live_work_and_chat_requests_never_run_two_forwards_at_once(live_server, loaded_model):
    """A live session and chat completions at the same time: the model never runs two forwards at once
    (the engine's model_lock), and both get their answers."""
    model = loaded_model.model
    original = model.forward
    active, overlaps, calls = [0], [0], [0]
    guard = threading.Lock()

    def counting_forward(*args, **kwargs):
        with guard:
            active[0] += 1
            calls[0] += 1
            overlaps[0] += active[0] > 1
        try:
            time.sleep(0.002)  # widen the window in which an unguarded forward would overlap
            return original(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    def chat(results: list) -> None:
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Count to ten."}], "max_tokens": 16}
        response = requests.post(f"{live_server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        results.append(response.status_code)

    model.forward = counting_forward
    try:
        results: list[int] = []
        threads = [threading.Thread(target=chat, args=(results,)) for _ in range(3)]
        with connect(live_server) as ws:
            assert recv(ws)["type"] == "ready"
            for thread in threads:
                thread.start()
            for i in range(3):
                assert send_frame(ws, float(i), jpeg())["type"] == "frame"
            ws.send(json.dumps({"type": "ask", "text": "What do you see?", "max_tokens": 8}))
            while recv(ws)["type"] != "answer_end":
                pass
        for thread in threads:
            thread.join(60)
    finally:
        del model.forward  # the class's forward again
    assert results == [200, 200, 200]
    assert calls[0] > 10 and overlaps[0] == 0


def test_a_client_leaving_mid_answer_frees_the_model(live_server):
    with connect(live_server) as ws:
        assert recv(ws)["type"] == "ready"
        assert send_frame(ws, 0.0, jpeg())["type"] == "frame"
        ws.send(json.dumps({"type": "ask", "text": "Tell me a long story.", "max_tokens": 64}))
        assert recv(ws)["type"] in ("delta", "answer_end")
    wait_sessions(live_server, 0)
    deadline = time.monotonic() + 10
    while live_server.app.state.server.runtime.engine.model_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live_server.app.state.server.runtime.engine.model_lock.locked()
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Still there?"}], "max_tokens": 4}
    response = requests.post(f"{live_server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    with connect(live_server) as ws:
        assert recv(ws)["type"] == "ready"
