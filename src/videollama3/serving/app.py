"""The FastAPI application: OpenAI-compatible routes, the front door, the web page, and model loading.

``create_app(config)`` returns an app that starts answering at once: the model loads on a background
thread and, until it is ready, model routes answer 503 (``/health`` says "loading"). Requests then go

    front door (API key, body size) -> validation (pydantic, 400) -> admission (429 when full)
    -> preparation on a thread pool (media, processor) -> the engine (continuous batching)
    -> the request's own event queue -> JSON or server-sent events.

Every error is OpenAI's error object with the right status, and none of them stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api_errors import APIError, bad_request, internal, not_found, timeout
from .completion import Completion, EventStreamResponse
from .config import ServerConfig
from .front_door import LIVE_PATH, UPLOAD_PATH, FrontDoor, ServerState
from .live_socket import serve_live
from .media import MediaLimits, MediaResolver, UploadStore
from .runtime import LoadedModel, Runtime, load_model
from .schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    UploadResponse,
)
from .service import check_supported, sampling_params

logger = logging.getLogger("videollama3.serving")


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request (the message says why)",
        401: "Missing or invalid API key",
        404: "Unknown model or route",
        413: "Request body or media too large",
        429: "Too many concurrent requests",
        503: "The model is loading",
        504: "The request timed out",
    }.items()
}


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status, headers=error.headers)


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------


def create_app(
    config: ServerConfig,
    *,
    loader: Callable[[ServerConfig], LoadedModel] = load_model,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app. The model loads (with ``loader``) on a background thread when the app starts."""
    config.validate()
    state = ServerState(config=config, api_key=config.resolved_api_key())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        _start(state, loader, on_load_error)
        try:
            yield
        finally:
            _stop(state)

    app = FastAPI(
        title="VideoLLaMA3 server",
        version=_version(),
        description="OpenAI-compatible chat completions over images and videos.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI pulls scripts from a CDN; the OpenAPI schema stays at /openapi.json
        redoc_url=None,
    )
    app.state.server = state
    app.add_middleware(FrontDoor, state=state)
    _install_error_handlers(app)
    _add_api_routes(app, state)
    if config.enable_web_page:
        _add_page_routes(app)
    return app


def _version() -> str:
    from .. import __version__

    return __version__


def _start(state: ServerState, loader, on_load_error) -> None:
    config = state.config
    state.work_dir = Path(tempfile.mkdtemp(prefix="videollama3-serve-"))
    upload_root = Path(config.upload_dir) if config.upload_dir else state.work_dir / "uploads"
    state.uploads = UploadStore(upload_root, config.max_upload_dir_bytes, config.max_media_bytes)
    limits = MediaLimits(
        media_root=Path(config.media_root) if config.media_root else None,
        allow_remote=config.allow_remote_media,
        max_media_bytes=config.max_media_bytes,
        max_video_seconds=config.max_video_seconds,
        max_frames=config.max_frames,
    )
    state.resolver = MediaResolver(limits, state.uploads, state.work_dir / "requests")
    state.executor = ThreadPoolExecutor(config.preprocess_workers, thread_name_prefix="videollama3-prepare")

    def load() -> None:
        started = time.monotonic()
        try:
            loaded = loader(config)
            runtime = Runtime(config, loaded, state.resolver)
        except BaseException as exc:  # noqa: BLE001 - reported through /health and on_load_error
            logger.exception("loading %s failed", config.model)
            state.load_error = f"{type(exc).__name__}: {exc}"
            if on_load_error is not None:
                on_load_error(exc)
            return
        if state.closing:
            runtime.engine.shutdown()
            return
        state.runtime = runtime
        logger.info("model %s ready in %.1f s", runtime.model_name, time.monotonic() - started)

    state.loader_thread = threading.Thread(target=load, name="videollama3-loader", daemon=True)
    state.loader_thread.start()


def _stop(state: ServerState) -> None:
    state.closing = True
    if state.runtime is not None:
        state.runtime.engine.shutdown()
    if state.executor is not None:
        state.executor.shutdown(wait=False, cancel_futures=True)
    if state.work_dir is not None:
        shutil.rmtree(state.work_dir, ignore_errors=True)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = _readable_errors(exc.errors())
        shown = [f"{where}: {msg}" if where else msg for where, msg in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        param = next((where for where, _ in errors if where), None)
        return _error_response(bad_request("Invalid request: " + "; ".join(shown) + more, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return _error_response(not_found(f"No route {request.method} {request.url.path}."))
        error = APIError(exc.status_code, str(exc.detail), type="invalid_request_error")
        if exc.status_code == 405:
            error.code = "method_not_allowed"
        return _error_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_response(internal())


_SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "description": "a ChatCompletionChunk as JSON, an error object as JSON, or [DONE] (the last event)",
        },
    },
    "required": ["data"],
}

# Discriminator values pydantic puts in error locations (messages by role, content parts by type).
_UNION_TAGS = frozenset({"system", "developer", "user", "assistant", "text", "image_url", "video_url"})


def _readable_errors(errors) -> list[tuple[str, str]]:
    """pydantic errors -> (field path, message), without union-branch noise.

    pydantic reports a ``str | list[...]`` field that failed as a list once per branch ("should be a
    valid string" and the real problem inside the list) and names branches in the location
    (``messages.0.user.content.list[tagged-union[...]].0``); clients want ``messages[0].content[0]``.
    """
    cleaned = []
    for err in errors:
        loc = list(err.get("loc", ()))
        path = []
        for i, part in enumerate(loc):
            if part == "body" and i == 0:
                continue
            if isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool") or part[:1].isupper()):
                continue  # a union branch or a model name
            if isinstance(part, str) and part in _UNION_TAGS and i > 0 and isinstance(loc[i - 1], int):
                continue  # the discriminator value after a list index
            path.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        where = "".join(path).lstrip(".")  # messages[0].content[1].image_url, as in the other errors
        cleaned.append((where, str(err.get("msg", "invalid value")), str(err.get("type", ""))))
    deeper = [
        (where, msg)
        for where, msg, kind in cleaned
        # A wrong-type error of one branch hides nothing when another branch went deeper into the field.
        if not (kind.endswith("_type") and any(o != where and o.startswith(where) for o, _, _ in cleaned))
    ]
    return list(dict.fromkeys(deeper or [(w, m) for w, m, _ in cleaned]))


def _add_api_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health():
        name = state.config.model_name
        if state.runtime is not None:
            return HealthResponse(status="ok", model=name)
        status = "error" if state.load_error else "loading"
        body = HealthResponse(status=status, model=name, detail=state.load_error)
        return JSONResponse(body.model_dump(), status_code=503)

    @app.get("/v1/models", response_model=ModelList, responses=_ERROR_RESPONSES)
    async def list_models():
        runtime = state.require_runtime()
        return ModelList(data=[_model_card(runtime)])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERROR_RESPONSES)
    async def get_model(model_id: str):
        runtime = state.require_runtime()
        if model_id != runtime.model_name:
            raise _unknown_model(model_id, runtime)
        return _model_card(runtime)

    @app.get("/stats", responses=_ERROR_RESPONSES)
    async def stats():
        """Engine and cache counters (for monitoring and tests)."""
        runtime = state.require_runtime()
        engine = runtime.engine
        features = engine.feature_cache.stats() if engine.feature_cache is not None else None
        prefixes = engine.prefix_cache.stats() if engine.prefix_cache is not None else None
        return {
            "in_flight": state.in_flight,
            "waiting": engine.num_waiting,
            "running": engine.num_running,
            "engine": asdict(engine.stats),
            "feature_cache": asdict(features) if features is not None else None,
            "prefix_cache": asdict(prefixes) if prefixes is not None else None,
            "live": {"sessions": state.live_sessions, "frames": state.live_frames, "answers": state.live_answers},
        }

    @app.websocket(LIVE_PATH)
    async def live(websocket: WebSocket):
        """A live video session (docs/serving.md, "Live sessions")."""
        await serve_live(websocket, state)

    @app.post(
        UPLOAD_PATH,
        response_model=UploadResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                "description": "the raw bytes of an image or a video; Content-Type image/* or video/* "
                "(or application/octet-stream), optional X-Filename header",
            }
        },
    )
    async def upload(request: Request):
        """Store an image or a video; refer to it in messages by the returned ``url`` (``upload://<id>``)."""
        state.require_runtime()
        content_type = request.headers.get("content-type", "application/octet-stream")
        if not content_type.lower().startswith(("image/", "video/", "application/octet-stream")):
            raise bad_request(f"Uploads must be image/* or video/* (got Content-Type {content_type!r}).")
        data = await request.body()
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(
            state.executor, state.uploads.save, data, content_type, request.headers.get("x-filename")
        )
        return UploadResponse(**info)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses={
            **_ERROR_RESPONSES,
            200: {
                "description": "The completion (JSON), or with stream=true server-sent events, each "
                "`data: <ChatCompletionChunk>`, ending with `data: [DONE]`",
                "content": {
                    "text/event-stream": {
                        # Each server-sent event (OpenAPI 3.2's way to describe the items of a stream).
                        "itemSchema": _SSE_EVENT_SCHEMA,
                    }
                },
            },
        },
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        runtime = state.require_runtime()
        if body.model != runtime.model_name:
            raise _unknown_model(body.model, runtime)
        check_supported(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + state.config.request_timeout
        admission = state.admission()
        admission.__enter__()
        try:
            try:
                prompt = await asyncio.wait_for(
                    loop.run_in_executor(state.executor, runtime.preparer.prepare, body),
                    state.config.request_timeout,
                )
            except asyncio.TimeoutError:
                raise timeout("Preparing the request's media took longer than the request timeout.") from None
            params = sampling_params(
                body,
                prompt.num_tokens,
                defaults=runtime.defaults,
                max_new_tokens=runtime.max_new_tokens,
                max_model_len=runtime.max_model_len,
            )
            completion = Completion(runtime, prompt, params, deadline, stream=bool(body.stream))
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                # The response owns the admission slot from here: released when it is done being sent.
                response = EventStreamResponse(completion.stream(include_usage), completion, admission)
                admission = None
                return response
            return await completion.collect(request)
        finally:
            if admission is not None:
                admission.__exit__(None, None, None)


def _unknown_model(model: str, runtime: Runtime) -> APIError:
    return not_found(
        f"The model {model!r} does not exist on this server (it serves {runtime.model_name!r}).",
        param="model",
        code="model_not_found",
    )


def _model_card(runtime: Runtime) -> ModelCard:
    return ModelCard(id=runtime.model_name, created=runtime.created, max_model_len=runtime.max_model_len)


# --------------------------------------------------------------------------------------------------
# The web page
# --------------------------------------------------------------------------------------------------

_PAGE_HEADERS = {
    # The page only talks to this server; inline scripts, frames and foreign origins are refused.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


def _static(name: str) -> bytes:
    return resources.files("videollama3.serving").joinpath("static").joinpath(name).read_bytes()


def _add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(_static("index.html"), headers=_PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        suffix = Path(name).suffix
        if name not in ("app.js", "style.css") or suffix not in _STATIC_TYPES:
            raise not_found(f"No static file {name!r}.")
        return Response(_static(name), media_type=_STATIC_TYPES[suffix], headers=_PAGE_HEADERS)
