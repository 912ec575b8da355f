"""``/v1/live``: a live video session over a WebSocket, one :class:`~videollama3.model.live.LiveSession` per connection.

Protocol (JSON text messages and binary messages; docs/serving.md, "Live sessions"):

client -> server
    ``{"type": "auth", "api_key": KEY}``   first message, when the key was not given as a Bearer header or
                                           an ``api_key`` query parameter
    ``{"type": "frame", "t": SECONDS}``    followed by ONE binary message: the frame, JPEG / PNG / WebP bytes
    ``{"type": "ask", "text": QUESTION, "max_tokens": N}``   (max_tokens optional, at most max_new_tokens)
server -> client
    ``{"type": "ready", "model", "fps", "max_frame_bytes"}``  the session is open
    ``{"type": "frame", "t", "kept_tokens", "total_tokens", "speak_score", "spoke", "text", "evicted_tokens"}``
    ``{"type": "delta", "text"}`` ... ``{"type": "answer_end"}``   the answer to an ``ask``
    ``{"type": "error", "message"}``       bad input; the session goes on
Close codes: 4401 missing or wrong key, 4429 too many live sessions, 4503 model not loaded, 1011 internal error.

One thread at a time on the model: the engine's scheduler holds ``engine.model_lock`` around each of its
iterations (a prefill or one decode step), and a live session takes the same lock around each of its model
calls (creating the session, one frame, the question, each answer token), on a worker thread, never on the
event loop. Cost: a live frame (vision encoder + one forward, and up to ``max_speech_tokens`` tokens when the
model speaks up) delays the engine's next decode step by that long, and a live step waits for the engine's
current iteration; an answer is interleaved token by token with the engine's decode steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
from numbers import Real
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import InputError, MediaError
from .front_door import WS_AUTHENTICATED, WS_UNAUTHORIZED, ServerState, key_matches

logger = logging.getLogger(__name__)

WS_BUSY = 4429  # close code: max_live_sessions already open
WS_UNAVAILABLE = 4503  # close code: the model is loading or failed to load
AUTH_TIMEOUT = 10.0  # seconds to send the key (first message) when the handshake did not carry it
MAX_TEXT_BYTES = 64 << 10  # a JSON message
MAX_FRAME_PIXELS = 4096 * 4096  # a decoded frame (checked from the header, before decoding)
FRAME_FORMATS = ("JPEG", "PNG", "WEBP")


class _Refused(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


async def serve_live(websocket: WebSocket, state: ServerState) -> None:
    """Run one live session on ``websocket`` until the client leaves."""
    await websocket.accept()
    try:
        if not websocket.scope.get(WS_AUTHENTICATED, True):
            await _authenticate(websocket, state)
        runtime = state.runtime
        if runtime is None:
            why = f"the model failed to load: {state.load_error}" if state.load_error else "the model is loading"
            raise _Refused(WS_UNAVAILABLE, why)
        limit = state.config.max_live_sessions
        if state.live_sessions >= limit:
            raise _Refused(WS_BUSY, f"too many live sessions ({state.live_sessions} open, limit {limit})")
    except _Refused as refused:
        await websocket.close(refused.code, refused.reason[:120])
        return
    except WebSocketDisconnect:
        return
    state.live_sessions += 1
    connection = _Connection(websocket, state, runtime)
    try:
        await connection.run()
    except WebSocketDisconnect:
        pass
    except Exception:
        logger.exception("live session failed")
        await _close_quietly(websocket, 1011, "internal error")
    finally:
        state.live_sessions -= 1
        connection.release()


async def _authenticate(websocket: WebSocket, state: ServerState) -> None:
    try:
        message = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT)
    except asyncio.TimeoutError:
        raise _Refused(WS_UNAUTHORIZED, 'no API key: send {"type": "auth", "api_key": ...} first') from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        body = json.loads(message.get("text") or "")
    except ValueError:
        body = None
    if not (isinstance(body, dict) and body.get("type") == "auth" and key_matches(body.get("api_key"), state.api_key)):
        raise _Refused(WS_UNAUTHORIZED, "missing or invalid API key")


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await websocket.close(code, reason)


class _Connection:
    """One client's session: messages handled in order, model work on worker threads under the model lock."""

    def __init__(self, websocket: WebSocket, state: ServerState, runtime):
        self.websocket = websocket
        self.state = state
        self.runtime = runtime
        self.lock = runtime.engine.model_lock
        self.session = None
        self.answer = None  # an answer being read, closed (under the lock) if the client leaves mid-answer
        self.frame_time: float | None = None  # the "t" of the frame whose bytes come next

    def _locked(self, fn, *args):
        import torch

        with self.lock, torch.no_grad():
            return fn(*args)

    async def _run_locked(self, fn, *args):
        return await asyncio.to_thread(self._locked, fn, *args)

    async def run(self) -> None:
        runtime = self.runtime
        self.session = await self._run_locked(runtime.model.live, runtime.processor)
        limit = self.state.config.max_media_bytes
        fps = float(getattr(runtime.processor, "fps", 1) or 1)
        await self.websocket.send_json(
            {"type": "ready", "model": runtime.model_name, "fps": fps, "max_frame_bytes": limit}
        )
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._frame_bytes(message["bytes"])
            else:
                await self._text(message.get("text") or "")

    async def error(self, message: str) -> None:
        await self.websocket.send_json({"type": "error", "message": message})

    async def _text(self, text: str) -> None:
        if len(text.encode()) > MAX_TEXT_BYTES:
            return await self.error(f"a text message is limited to {MAX_TEXT_BYTES} bytes")
        try:
            body = json.loads(text)
        except ValueError:
            return await self.error("text messages must be JSON objects")
        if not isinstance(body, dict):
            return await self.error("text messages must be JSON objects")
        kind = body.get("type")
        if kind == "frame":
            t = body.get("t")
            if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t):
                return await self.error(f"frame: t must be a finite number of seconds, got {t!r:.50}")
            if self.frame_time is not None:
                await self.error("frame: the previous frame message got no image bytes; it is dropped")
            self.frame_time = float(t)
        elif kind == "ask":
            await self._ask(body)
        elif kind == "auth":
            pass  # already authenticated (header or query): harmless
        else:
            await self.error(f"unknown message type {kind!r:.50} (expected 'frame' or 'ask')")

    async def _frame_bytes(self, data: bytes) -> None:
        t, self.frame_time = self.frame_time, None
        if t is None:
            return await self.error('a binary message must follow a {"type": "frame", "t": ...} message')
        limit = self.state.config.max_media_bytes
        if len(data) > limit:
            return await self.error(f"the frame at t={t} is {len(data)} bytes; the limit is {limit}")
        try:
            image = await asyncio.to_thread(_decode_frame, data, t)
            result = await self._run_locked(self.session.add_frame, image, t)
        except (InputError, MediaError) as exc:
            return await self.error(str(exc))
        self.state.live_frames += 1
        await self.websocket.send_json(
            {
                "type": "frame",
                "t": result.time,
                "kept_tokens": result.kept_tokens,
                "total_tokens": result.total_tokens,
                "speak_score": result.speak_score,
                "spoke": result.spoke,
                "text": result.text,
                "evicted_tokens": result.evicted_tokens,
            }
        )

    async def _ask(self, body: dict[str, Any]) -> None:
        text = body.get("text")
        ceiling = self.state.config.max_new_tokens
        max_tokens = body.get("max_tokens", min(256, ceiling))
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return await self.error(f"ask: max_tokens must be a positive integer, got {max_tokens!r:.50}")
        max_tokens = min(max_tokens, ceiling)  # the server's max_new_tokens bounds every answer
        try:
            self.answer = await self._run_locked(self.session.ask, text, max_tokens)
        except (InputError, MediaError) as exc:
            return await self.error(str(exc))
        while True:
            piece = await self._run_locked(next, self.answer, None)
            if piece is None:
                break
            await self.websocket.send_json({"type": "delta", "text": piece})
        self.answer = None
        self.state.live_answers += 1
        await self.websocket.send_json({"type": "answer_end"})

    def release(self) -> None:
        """The client left: close an unfinished answer under the lock (closing it appends to the cache, a
        forward pass that must not run whenever the garbage collector gets to it), on a worker thread."""
        answer, self.answer, self.session = self.answer, None, None
        if answer is not None:
            asyncio.get_running_loop().run_in_executor(None, self._locked, answer.close)


def _decode_frame(data: bytes, t: float):
    """JPEG / PNG / WebP bytes -> an RGB PIL image; MediaError for anything else."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in FRAME_FORMATS:
            raise MediaError(f"the frame at t={t} is {image.format}; send JPEG, PNG or WebP")
        width, height = image.size
        if width * height > MAX_FRAME_PIXELS:
            raise MediaError(f"the frame at t={t} is {width}x{height}; at most {MAX_FRAME_PIXELS} pixels")
        return image.convert("RGB")
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a broken file
        raise MediaError(f"the frame at t={t} is not a readable image ({type(exc).__name__})") from None
