"""From an OpenAI request to engine inputs: messages -> processor conversation -> prompt; sampling options.

:class:`RequestPreparer` runs on the preprocessing thread pool: it resolves media (see :mod:`.media`),
checks video limits, calls the processor (the only place prompts are built: the chat template and the
visual-token layout are the processor's), and hashes each visual item for the feature cache.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from ..errors import VideoLLaMA3Error
from .api_errors import APIError, bad_request
from .media import MediaLimits, MediaResolver, MediaScope, probe_video_seconds
from .schemas import (
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    AssistantMessage,
    ChatCompletionRequest,
    ImagePart,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoPart,
)
from .types import GREEDY_TEMPERATURE, PreparedPrompt, SamplingParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling used when a request does not say: the checkpoint's ``generation_config``."""

    temperature: float = 0.0
    top_p: float = 1.0

    @classmethod
    def from_generation_config(cls, generation_config: Any) -> GenerationDefaults:
        if generation_config is None or not getattr(generation_config, "do_sample", False):
            return cls()  # the checkpoint decodes greedily (as the official evaluation does)
        return cls(
            float(getattr(generation_config, "temperature", None) or 1.0),
            float(getattr(generation_config, "top_p", None) or 1.0),
        )


class RequestPreparer:
    """Turns a validated chat request into a :class:`PreparedPrompt` (thread-safe; runs off the event loop)."""

    def __init__(
        self,
        processor,
        resolver: MediaResolver,
        *,
        max_visual_tokens: int | None,
        max_prompt_tokens: int,
    ):
        self.processor = processor
        self.resolver = resolver
        self.limits: MediaLimits = resolver.limits
        self.max_visual_tokens = max_visual_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.image_token_id = int(processor.image_token_id)

    def prepare(self, request: ChatCompletionRequest) -> PreparedPrompt:
        with self.resolver.scope() as scope:
            conversation = self.conversation(request, scope)
            try:
                out = self.processor(
                    conversation=conversation,
                    add_system_prompt=True,
                    add_generation_prompt=True,
                    return_tensors="pt",
                    max_tokens=self.max_visual_tokens,
                )
            except APIError:
                raise
            except VideoLLaMA3Error as exc:
                raise bad_request(scope.redact(str(exc)), param="messages", code="invalid_media") from None
            except (OSError, ValueError, EOFError) as exc:
                # Decoders (Pillow, PyAV) report unreadable input with these; name the media, not our paths.
                logger.info("media could not be read: %s", exc)
                raise bad_request(
                    f"A media item could not be decoded: {scope.redact(str(exc)) or type(exc).__name__}",
                    param="messages",
                    code="invalid_media",
                ) from None
        input_ids = out["input_ids"][0]
        n_tokens = int(input_ids.numel())
        if n_tokens > self.max_prompt_tokens:
            raise bad_request(
                f"The prompt is {n_tokens} tokens (visual tokens included); the limit is {self.max_prompt_tokens}. "
                "Send fewer or smaller media (e.g. fewer video frames), or a shorter conversation.",
                param="messages",
                code="context_length_exceeded",
            )
        visual = out.get("pixel_values") is not None
        prompt = PreparedPrompt(
            input_ids=input_ids,
            pixel_values=out["pixel_values"] if visual else None,
            grid_sizes=out["grid_sizes"] if visual else None,
            merge_sizes=out["merge_sizes"] if visual else None,
            compression_mask=out.get("compression_mask") if visual else None,
            visual_tokens=int((input_ids == self.image_token_id).sum()),
        )
        return prompt.with_cache_keys(self.image_token_id)  # hash here, not on the model thread

    # ------------------------------------------------------------------ messages
    def conversation(self, request: ChatCompletionRequest, scope: MediaScope) -> list[dict]:
        """OpenAI messages -> the processor's conversation format (media resolved to local files)."""
        conversation = []
        for m, message in enumerate(request.messages):
            where = f"messages[{m}]"
            if isinstance(message, SystemMessage):
                conversation.append({"role": "system", "content": _text_content(message.content)})
            elif isinstance(message, AssistantMessage):
                if message.content is None:
                    raise bad_request(
                        "Assistant messages without content (tool calls) are not supported.",
                        param=f"{where}.content",
                    )
                conversation.append({"role": "assistant", "content": _text_content(message.content)})
            elif isinstance(message, UserMessage):
                if isinstance(message.content, str):
                    conversation.append({"role": "user", "content": message.content})
                    continue
                items = [
                    self._content_item(part, f"{where}.content[{c}]", scope) for c, part in enumerate(message.content)
                ]
                conversation.append({"role": "user", "content": items})
        return conversation

    def _content_item(self, part, where: str, scope: MediaScope) -> dict:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        if isinstance(part, ImagePart):
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
            media = self.resolver.resolve(url, "image", f"{where}.image_url", scope)
            return {"type": "image", "image": {"image_path": str(media.path)}}
        if isinstance(part, VideoPart):
            return self._video_item(part, where, scope)
        raise bad_request(f"Unsupported content part {type(part).__name__}.", param=where)  # pragma: no cover

    def _video_item(self, part: VideoPart, where: str, scope: MediaScope) -> dict:
        inner = part.video_url if not isinstance(part.video_url, str) else None
        url = part.video_url if isinstance(part.video_url, str) else part.video_url.url

        def option(name: str):
            value = getattr(inner, name, None) if inner is not None else None
            return value if value is not None else getattr(part, name)

        fps, max_frames, start, end = (option(k) for k in ("fps", "max_frames", "start_time", "end_time"))
        if max_frames is not None and max_frames > self.limits.max_frames:
            raise bad_request(
                f"max_frames {max_frames} exceeds the server's limit of {self.limits.max_frames}.",
                param=f"{where}.max_frames",
            )
        if start is not None and end is not None and start > end:
            raise bad_request(f"start_time {start} is after end_time {end}.", param=f"{where}.start_time")
        media = self.resolver.resolve(url, "video", f"{where}.video_url", scope)
        self._check_duration(media.path, media.display, start, end, where)
        video: dict[str, Any] = {
            "video_path": str(media.path),
            "fps": fps if fps is not None else self.processor.fps,
            "max_frames": max_frames
            if max_frames is not None
            else min(self.processor.max_frames, self.limits.max_frames),
        }
        if start is not None:
            video["start_time"] = start
        if end is not None:
            video["end_time"] = end
        return {"type": "video", "video": video}

    def _check_duration(self, path, display: str, start: float | None, end: float | None, where: str) -> None:
        """Refuse videos whose decoded span exceeds the limit, from the header alone (before decoding)."""
        if path.is_dir() or path.suffix.lower() == ".gif":
            return  # frame folders and GIFs are bounded by max_frames and the media size instead
        try:
            duration = probe_video_seconds(path)
        except Exception:  # PyAV raises its own error types for anything it cannot parse
            raise bad_request(
                f"The video {display!r} could not be read (not a video file PyAV can open).",
                param=f"{where}.video_url",
                code="invalid_media",
            ) from None
        if duration is None or not math.isfinite(duration):
            return
        span = min(duration, end if end is not None else duration) - (start or 0.0)
        if span > self.limits.max_video_seconds:
            raise bad_request(
                f"The video {display!r} spans {span:.1f} s; the limit is {self.limits.max_video_seconds:g} s "
                "(trim it with start_time / end_time).",
                param=f"{where}.video_url",
                code="video_too_long",
            )


def _text_content(content: str | list[TextPart]) -> str | list[dict]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": part.text} for part in content]


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse OpenAI options this server does not implement, instead of silently ignoring them."""
    unsupported = {
        "frequency_penalty": bool(request.frequency_penalty),
        "presence_penalty": bool(request.presence_penalty),
        "logprobs": bool(request.logprobs),
        "top_logprobs": bool(request.top_logprobs),
        "logit_bias": bool(request.logit_bias),
        "tools": bool(request.tools) or bool(request.functions),
        "tool_choice": request.tool_choice not in (None, "none"),
        "response_format": request.response_format is not None and request.response_format.get("type") != "text",
    }
    for name, used in unsupported.items():
        if used:
            raise bad_request(f"'{name}' is not supported by this server.", param=name, code="unsupported_parameter")


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise bad_request(f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.", param="stop")
    for s in stops:
        if not s:
            raise bad_request("Stop sequences must not be empty.", param="stop")
        if len(s) > MAX_STOP_LENGTH:
            raise bad_request(f"Stop sequences must be at most {MAX_STOP_LENGTH} characters.", param="stop")
    return tuple(dict.fromkeys(stops))


def sampling_params(
    request: ChatCompletionRequest,
    prompt_tokens: int,
    *,
    defaults: GenerationDefaults,
    max_new_tokens: int,
    max_model_len: int | None,
) -> list[SamplingParams]:
    """One :class:`SamplingParams` per requested choice (``n``); choice i uses seed + i."""
    room = (max_model_len - prompt_tokens) if max_model_len else max_new_tokens
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if asked is not None and asked > max_new_tokens:
        raise bad_request(f"{param} {asked} exceeds the server's limit of {max_new_tokens}.", param=param)
    if room < 1 or (asked is not None and asked > room):
        raise bad_request(
            f"The prompt is {prompt_tokens} tokens and the model's context is {max_model_len}: "
            f"{max(room, 0)} tokens are left for the answer"
            + (f", fewer than the {asked} asked." if asked is not None else "."),
            param=param if asked is not None else "messages",
            code="context_length_exceeded",
        )
    budget = asked if asked is not None else min(max_new_tokens, room)
    temperature = request.temperature if request.temperature is not None else defaults.temperature
    top_p = request.top_p if request.top_p is not None else defaults.top_p
    if top_p <= 0:  # nucleus of mass 0 = the most likely token only
        temperature = 0.0
    stops = stop_sequences(request.stop)
    n = request.n or 1
    params = []
    for i in range(n):
        seed = None if request.seed is None else (request.seed + i) % (2**63)
        params.append(
            SamplingParams(
                max_new_tokens=budget,
                temperature=temperature if temperature > GREEDY_TEMPERATURE else 0.0,
                top_p=top_p,
                seed=seed,
                stop=stops,
                stream=bool(request.stream),
            )
        )
    return params
