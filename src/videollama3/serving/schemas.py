"""Request and response bodies of the HTTP API (pydantic), in OpenAI's chat-completions format.

Extensions to OpenAI's format, all optional:

- a ``video_url`` content part, ``{"type": "video_url", "video_url": {"url": ..., "fps": 1,
  "max_frames": 180, "start_time": 0, "end_time": 10}}``; the sampling fields may also sit beside
  ``video_url`` in the part;
- ``usage.prompt_tokens_details.visual_tokens``: the prompt's visual tokens (after frame pruning).

Unknown request fields are ignored (clients send vendor extensions); options this server cannot honour
(tools, log-probabilities, penalties, JSON mode) are refused with a 400 rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 256
MAX_CHOICES = 8
MAX_FPS = 60.0

_Seconds = Annotated[float, Field(ge=0, le=10**7, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImageURL(_Request):
    url: str = Field(
        description="data:<mime>;base64,..., upload://<id>, a path / file:// URL under the media root, "
        "or http(s):// when remote media are allowed"
    )
    detail: Literal["auto", "low", "high"] | None = Field(None, description="accepted for compatibility; ignored")


class ImagePart(_Request):
    type: Literal["image_url"]
    image_url: ImageURL | str


class VideoSamplingFields(_Request):
    fps: float | None = Field(None, gt=0, le=MAX_FPS, allow_inf_nan=False, description="frames sampled per second")
    max_frames: int | None = Field(None, ge=1, le=100_000, description="most frames kept (uniformly)")
    start_time: _Seconds | None = Field(None, description="seconds; trim the video from here")
    end_time: _Seconds | None = Field(None, description="seconds; trim the video up to here")


class VideoURL(VideoSamplingFields):
    url: str = Field(description="same forms as image_url.url")


class VideoPart(VideoSamplingFields):
    type: Literal["video_url"]
    video_url: VideoURL | str


UserContentPart = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class SystemMessage(_Request):
    role: Literal["system", "developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Request):
    role: Literal["user"]
    content: str | list[UserContentPart]
    name: str | None = None


class AssistantMessage(_Request):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None


Message = Annotated[SystemMessage | UserMessage | AssistantMessage, Field(discriminator="role")]


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=2**31 - 1, description="most tokens to generate")
    max_completion_tokens: int | None = Field(None, ge=1, le=2**31 - 1, description="alias of max_tokens")
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False, description="0 = greedy")
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP_SEQUENCES} strings")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1, le=MAX_CHOICES)
    user: str | None = None
    # Known OpenAI options this server does not implement: refused when set to a non-default value.
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any | None = None
    functions: list[dict[str, Any]] | None = None


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    visual_tokens: int = Field(0, description="visual tokens in the prompt, after frame pruning")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion (``data: {...}``; the stream ends with ``data: [DONE]``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "videollama3"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "error"]
    model: str
    detail: str | None = None


class UploadResponse(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    filename: str | None = None
    sha256: str
    url: str = Field(description="use as image_url.url / video_url.url")
