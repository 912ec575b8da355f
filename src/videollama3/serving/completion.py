"""One chat completion in flight: engine sequences -> the request's own event queue -> JSON or server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import VideoLLaMA3Error
from .api_errors import APIError, bad_request, internal, timeout
from .runtime import Runtime
from .types import Failed, Finished, PreparedPrompt, SamplingParams, SequenceHandle, TextDelta

logger = logging.getLogger("videollama3.serving")


def api_error_of(error: BaseException) -> APIError:
    if isinstance(error, APIError):
        return error
    if isinstance(error, VideoLLaMA3Error):
        return bad_request(str(error))
    logger.error("generation failed: %r", error)
    return internal()


class Completion:
    """One chat completion in flight: its engine sequences and the queue their events arrive on."""

    def __init__(
        self, runtime: Runtime, prompt: PreparedPrompt, params: list[SamplingParams], deadline: float, stream: bool
    ):
        self.runtime = runtime
        self.prompt = prompt
        self.deadline = deadline
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.handles: list[SequenceHandle] = []
        for index, p in enumerate(params):
            emit = self._streaming_emit(index) if stream else self._collecting_emit(index)
            self.handles.append(runtime.engine.submit(prompt, p, emit))

    # Events cross from the engine thread to this request's own queue (no shared queue, no misrouting).
    def _streaming_emit(self, index: int):
        def emit(event) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

        return emit

    def _collecting_emit(self, index: int):
        # Non-streamed answers gather text on the engine thread and wake the event loop once per choice.
        parts: list[str] = []

        def emit(event) -> None:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, (event, "".join(parts))))

        return emit

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def _next(self) -> tuple[int, Any]:
        """The next event, or ``asyncio.TimeoutError`` once the request's deadline has passed."""
        remaining = self.deadline - self.loop.time()
        if remaining <= 0:
            raise asyncio.TimeoutError
        return await asyncio.wait_for(self.queue.get(), remaining)

    def _usage(self, completion_tokens: int) -> dict:
        prompt_tokens = self.prompt.num_tokens
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "visual_tokens": self.prompt.visual_tokens},
        }

    async def collect(self, request: Request) -> JSONResponse:
        choices: dict[int, dict] = {}
        completion_tokens = 0
        try:
            while len(choices) < len(self.handles):
                remaining = self.deadline - self.loop.time()
                if remaining <= 0:
                    raise timeout("The request did not complete within the server's request timeout.")
                try:
                    # Wake up every second to notice a client that went away.
                    index, (event, text) = await asyncio.wait_for(self.queue.get(), min(remaining, 1.0))
                except asyncio.TimeoutError:
                    if await request.is_disconnected():  # nobody to answer: free the batch slots
                        self.cancel()
                        return JSONResponse({}, status_code=499)
                    continue
                if isinstance(event, Failed):
                    raise api_error_of(event.error)
                completion_tokens += event.completion_tokens
                choices[index] = {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": event.reason,
                    "logprobs": None,
                }
        finally:
            self.cancel()  # a no-op for finished sequences; stops the others after an error
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.runtime.model_name,
            "choices": [choices[i] for i in sorted(choices)],
            "usage": self._usage(completion_tokens),
            "system_fingerprint": None,
        }
        return JSONResponse(body)

    def _chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.runtime.model_name,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return _sse(chunk)

    def _render(self, index: int, event) -> str:
        if isinstance(event, TextDelta):
            return self._chunk([{"index": index, "delta": {"content": event.text}, "finish_reason": None}])
        if isinstance(event, Finished):
            return self._chunk([{"index": index, "delta": {}, "finish_reason": event.reason}])
        return _sse(api_error_of(event.error).to_dict())

    async def stream(self, include_usage: bool) -> AsyncIterator[str]:
        pending = len(self.handles)
        completion_tokens = 0
        try:
            yield "".join(
                self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                for i in range(pending)
            )
            while pending:
                try:
                    events = [await self._next()]
                except asyncio.TimeoutError:
                    yield _sse(timeout("The request did not complete within the server's request timeout.").to_dict())
                    break
                while not self.queue.empty():  # send what has piled up in one write
                    events.append(self.queue.get_nowait())
                out = []
                for index, event in events:
                    out.append(self._render(index, event))
                    if isinstance(event, (Finished, Failed)):
                        pending -= 1
                        if isinstance(event, Finished):
                            completion_tokens += event.completion_tokens
                yield "".join(out)
            if include_usage and not pending:
                yield self._chunk([], self._usage(completion_tokens))
            yield "data: [DONE]\n\n"
        finally:
            self.cancel()


def _sse(payload: dict) -> str:
    """One server-sent event (compact JSON: streams are many small events)."""
    return "data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n\n"


class EventStreamResponse(StreamingResponse):
    """Server-sent events whose completion is cancelled and admission slot released however sending ends.

    A generator's ``finally`` does not run if the client leaves before the first chunk is sent (the
    generator never started), so the cleanup lives here, around the whole response.
    """

    def __init__(self, events: AsyncIterator[str], completion: Completion, admission):
        super().__init__(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self._completion = completion
        self._admission = admission

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._completion.cancel()
            self._admission.__exit__(None, None, None)


