"""The VideoLLaMA3 chat template, in Python.

A line-by-line equivalent of the Jinja template shipped in the released ``tokenizer_config.json``
(ChatML with VideoLLaMA3's system prompt, ``<image>`` placeholders and ``Time {t}s:`` frame labels),
without needing Jinja at run time. ``tests/processing/test_chat_template.py`` checks it against the
Jinja template itself on many conversations.

The renderer expects *resolved* content: video items carry ``num_frames`` (and ``timestamps`` when
known), which the processor fills in after planning which frames to sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

IMAGE_TOKEN = "<image>"
DEFAULT_SYSTEM_PROMPT = (
    "You are VideoLLaMA3 created by Alibaba DAMO Academy, a helpful assistant to help people understand images "
    "and videos."
)
STREAM_ROLE = "stream"


def format_time(seconds: float) -> str:
    """A timestamp as the template prints it: Jinja's ``round(1) | string``, i.e. ``str(round(t, 1))``."""
    return str(round(float(seconds), 1))


def content_kind(item: Any) -> str:
    """How the template treats a content item: "string", "text", "image", "video" or "other".

    Mirrors the template's tests in order: a ``text`` type or key wins, then image, then video.
    """
    if isinstance(item, str):
        return "string"
    if not isinstance(item, Mapping):
        return "other"
    kind = item.get("type")
    if kind == "text" or "text" in item:
        return "text"
    if kind == "image" or "image" in item:
        return "image"
    if kind == "video" or "video" in item:
        return "video"
    return "other"


def render_conversation(
    messages: Sequence[Mapping[str, Any]],
    *,
    add_system_prompt: bool = False,
    add_generation_prompt: bool = False,
    image_token: str = IMAGE_TOKEN,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> str:
    """Render a conversation to the prompt string (one ``image_token`` per image and per video frame).

    Args:
        messages: ``{"role": ..., "content": str | list}``; list items are strings, ``{"type": "text",
            "text": ...}``, ``{"type": "image"[, "timestamp": t]}`` or ``{"type": "video", "num_frames": n
            [, "timestamps": [...]]}``.
        add_system_prompt: prepend VideoLLaMA3's default system message unless the conversation starts
            with a system message.
        add_generation_prompt: end with ``<|im_start|>assistant\\n``.
    """
    parts: list[str] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if add_system_prompt and index == 0 and role != "system":
            parts.append(f"<|im_start|>system\n{system_prompt}<|im_end|>\n")
        identifier = "stream" if role == STREAM_ROLE else "im"
        parts.append(f"<|{identifier}_start|>{role}\n")
        content = message["content"]
        if isinstance(content, str):
            # Note: the template ends string content with a newline even for the stream role.
            parts.append(f"{content}<|{identifier}_end|>\n")
            continue
        for item in content:
            kind = content_kind(item)
            if kind == "string":
                parts.append(item)
            elif kind == "text":
                parts.append(item["text"])
            elif kind == "image":
                if "timestamp" in item:
                    parts.append(f"Time {format_time(item['timestamp'])}s: ")
                parts.append(image_token + "\n")
            elif kind == "video":
                count = item["num_frames"]
                for i in range(count):
                    if "timestamps" in item:
                        parts.append(f"Time {format_time(item['timestamps'][i])}s:")
                    parts.append(image_token + ("," if i < count - 1 else "\n"))
        parts.append(f"<|{identifier}_end|>" if identifier == "stream" else f"<|{identifier}_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)
