"""The server's shared state and its front door: API key and body size, checked before any body is read.

WebSockets (``/v1/live``) pass the same door: the key as a Bearer header or an ``api_key`` query parameter
(browsers cannot set headers on a WebSocket); without either, ``/v1/live`` is let in unauthenticated and
must see the key in the connection's first message (see :mod:`.live_socket`), every other path is closed
with code 4401.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from .api_errors import APIError, bad_request, too_large, too_many_requests, unauthorized
from .api_errors import unavailable as unavailable_error
from .config import ServerConfig
from .media import MediaResolver, UploadStore
from .runtime import Runtime

# Routes anyone may call: the page and its assets, the health probe and the API description.
PUBLIC_PATHS = ("/", "/health", "/openapi.json", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
UPLOAD_PATH = "/v1/uploads"
LIVE_PATH = "/v1/live"
# Set on a WebSocket scope by the front door: whether the key was already given (header or query).
WS_AUTHENTICATED = "videollama3.authenticated"
WS_UNAUTHORIZED = 4401  # close code: missing or wrong API key


@dataclass
class ServerState:
    """Everything the routes share (lives on ``app.state.server``); touched from the event loop only."""

    config: ServerConfig
    api_key: str | None
    runtime: Runtime | None = None
    load_error: str | None = None
    in_flight: int = 0
    executor: ThreadPoolExecutor | None = None
    resolver: MediaResolver | None = None
    uploads: UploadStore | None = None
    work_dir: Path | None = None
    loader_thread: threading.Thread | None = None
    closing: bool = field(default=False)
    live_sessions: int = 0  # open /v1/live sessions (admission: at most config.max_live_sessions)
    live_frames: int = 0  # frames appended by live sessions since the start
    live_answers: int = 0  # questions answered by live sessions since the start

    def require_runtime(self) -> Runtime:
        if self.runtime is not None:
            return self.runtime
        if self.load_error is not None:
            raise unavailable_error(f"The model failed to load: {self.load_error}", code="model_load_failed")
        raise unavailable_error("The model is loading; retry shortly.")

    @contextlib.contextmanager
    def admission(self):
        """Count one in-flight request; 429 when ``max_concurrent_requests`` are already in flight."""
        if self.in_flight >= self.config.max_concurrent_requests:
            raise too_many_requests(
                f"The server is busy ({self.in_flight} requests in flight, limit "
                f"{self.config.max_concurrent_requests}); retry shortly."
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class _BodyTooLarge(Exception):
    pass


class FrontDoor:
    """Pure ASGI middleware: Bearer authentication and request-body limits, checked before the app runs.

    Authentication happens before the body is read, so an unauthenticated client cannot make the server
    parse anything. The body limit is checked against Content-Length and again while the body streams
    in (chunked uploads have no Content-Length).
    """

    def __init__(self, app, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        key = self.state.api_key
        if key and not _is_public(path) and not _authorized(scope, key):
            return await send_error(send, unauthorized())
        limit = self.state.config.max_media_bytes if path == UPLOAD_PATH else self.state.config.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return await send_error(send, bad_request("Invalid Content-Length header."))
            if int(length) > limit:
                return await send_error(send, too_large(f"The request body is {length} bytes; the limit is {limit}."))

        received = 0
        exceeded = False
        started = False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:
                # The app caught the error while reading the body (FastAPI answers 400 "error parsing
                # the body"); the client gets the 413 below instead.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not started:
            await send_error(send, too_large(f"The request body exceeds the limit of {limit} bytes."))

    async def _websocket(self, scope, receive, send):
        key = self.state.api_key
        authenticated = not key or _authorized(scope, key) or _query_key_ok(scope, key)
        if not authenticated and scope.get("path", "") != LIVE_PATH:
            # Accepted, then closed: a browser sees the code and reason (a refused handshake is just "1006").
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": WS_UNAUTHORIZED, "reason": "missing or invalid API key"})
            return
        scope = {**scope, WS_AUTHENTICATED: authenticated}
        return await self.app(scope, receive, send)


def key_matches(given, key: str) -> bool:
    """Whether ``given`` is the API key (a constant-time comparison)."""
    return isinstance(given, str) and hmac.compare_digest(given.strip().encode(), key.encode())


def _query_key_ok(scope, key: str) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(key_matches(value, key) for value in query.get("api_key", []))


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _authorized(scope, key: str) -> bool:
    header = _header(scope, b"authorization") or ""
    scheme, _, token = header.partition(" ")
    # compare_digest: the time taken does not reveal how much of a guessed key was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def send_error(send, error: APIError) -> None:
    body = json.dumps(error.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
