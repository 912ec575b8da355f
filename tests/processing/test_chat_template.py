"""The Python chat template against the reference: every fixture prompt, and the Jinja template itself."""

from __future__ import annotations

import json

import pytest
from transformers import Qwen2Tokenizer
from vl3_media import CASE_NAMES, FIXTURE_MODEL, FIXTURES

from videollama3.processing import VideoLLaMA3Processor, render_conversation
from videollama3.processing.chat_template import DEFAULT_SYSTEM_PROMPT, format_time


@pytest.fixture(scope="module")
def processor():
    return VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)


@pytest.fixture(scope="module")
def jinja_tokenizer():
    return Qwen2Tokenizer.from_pretrained(FIXTURE_MODEL)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixture_prompts(processor, name):
    case = json.loads((FIXTURES / "cases" / name / "case.json").read_text())
    prompt = processor.apply_chat_template(
        case["conversation"],
        add_system_prompt=case["add_system_prompt"],
        add_generation_prompt=case["add_generation_prompt"],
        media_root=FIXTURES,
    )
    assert prompt == case["prompt"]


RESOLVED_CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    [
        {
            "role": "user",
            "content": [
                "Image 1: ",
                {"type": "image"},
                "Image 2: ",
                {"type": "image"},
                {"type": "text", "text": "Same?"},
            ],
        },
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "video", "num_frames": 3, "timestamps": [0.0, 1.25, 2.35]},
                {"type": "text", "text": "Q"},
            ],
        }
    ],
    [{"role": "user", "content": [{"type": "video", "num_frames": 2}, {"type": "text", "text": "no timestamps"}]}],
    [{"role": "user", "content": [{"type": "video", "num_frames": 1, "timestamps": [10.05]}]}],
    # Streaming: frames as timestamped images in "stream" turns, then a user turn.
    [
        {"role": "stream", "content": [{"type": "image", "timestamp": 0.0}, {"type": "image", "timestamp": 1.0}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "stream", "content": "plain stream text"},
        {"role": "user", "content": [{"type": "image", "timestamp": 2.55}, {"type": "text", "text": "Now?"}]},
    ],
    # Keys without a type, as the template accepts them.
    [{"role": "user", "content": [{"text": "text without type "}, {"image": None}]}],
]


@pytest.mark.parametrize("conversation", RESOLVED_CONVERSATIONS)
@pytest.mark.parametrize("add_system_prompt", [False, True])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_equals_the_jinja_template(jinja_tokenizer, conversation, add_system_prompt, add_generation_prompt):
    expected = jinja_tokenizer.apply_chat_template(
        conversation,
        tokenize=False,
        add_system_prompt=add_system_prompt,
        add_generation_prompt=add_generation_prompt,
        image_token="<image>",
    )
    ours = render_conversation(
        conversation, add_system_prompt=add_system_prompt, add_generation_prompt=add_generation_prompt
    )
    assert ours == expected


def test_system_prompt_is_added_only_without_a_system_message():
    user = [{"role": "user", "content": "Hi"}]
    assert render_conversation(user, add_system_prompt=True).startswith(
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
    )
    system = [{"role": "system", "content": "Custom."}, *user]
    assert DEFAULT_SYSTEM_PROMPT not in render_conversation(system, add_system_prompt=True)
    assert render_conversation(user, add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_time_format_is_python_round_to_one_decimal():
    assert [format_time(t) for t in (0, 1.5, 2.25, 10.0, 3.3333, 59.96)] == ["0.0", "1.5", "2.2", "10.0", "3.3", "60.0"]
