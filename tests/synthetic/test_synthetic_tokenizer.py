"""The small model's tokenizer: byte-level BPE with Qwen's and VideoLLaMA3's special tokens and the official
chat template, loadable by transformers and by the processor."""

from __future__ import annotations

import json

import pytest

from parity_fixtures import FIXTURE_MODEL
from videollama3.synthetic import model as synthetic_model


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    synthetic_model.build_tokenizer(folder, seed=0, corpus_scale=0.02)
    return folder


def test_files_and_special_tokens(tokenizer_dir):
    from transformers import Qwen2Tokenizer

    ids = json.loads((tokenizer_dir / "added_tokens.json").read_text())
    assert list(ids) == sorted(synthetic_model.SPECIAL_TOKENS)
    assert sorted(ids.values()) == list(range(min(ids.values()), min(ids.values()) + 6)), "specials come last"
    tok = Qwen2Tokenizer.from_pretrained(tokenizer_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    assert len(tok) == max(ids.values()) + 1
    for name in synthetic_model.SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(name) == ids[name]
        assert tok(f"a{name}b", add_special_tokens=False)["input_ids"][1] == ids[name]


def test_any_text_round_trips(tokenizer_dir):
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer.from_pretrained(tokenizer_dir)
    for text in ["What colour is the circle?", "Ünïcødé, 漢字 and emoji 🎬\n\n  spaces", "Time 12.0s:<image>,"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_is_the_official_one(tokenizer_dir):
    ours = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    reference = json.loads((FIXTURE_MODEL / "tokenizer_config.json").read_text())
    assert ours["chat_template"] == reference["chat_template"]
    for key in ("bos_token", "eos_token", "pad_token", "tokenizer_class", "additional_special_tokens"):
        assert ours[key] == reference[key]


def test_processor_renders_with_it(tmp_path):
    from videollama3.processing import VideoLLaMA3Processor

    folder = synthetic_model.build_initial_model(
        tmp_path / "m", synthetic_model.ModelSize(64, 128, 1, 4, 2, 32, 64, 1, 2), corpus_scale=0.02
    )
    processor = VideoLLaMA3Processor.from_pretrained(folder)
    conversation = [{"role": "user", "content": [{"type": "text", "text": "How many sides does a square have?"}]}]
    prompt = processor.apply_chat_template(conversation, add_system_prompt=True, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are VideoLLaMA3") and prompt.endswith("<|im_start|>assistant\n")
    ids = processor(conversation=conversation, add_generation_prompt=True)["input_ids"][0].tolist()
    assert processor.tokenizer.decode(ids) == processor.apply_chat_template(conversation, add_generation_prompt=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["image_token_index"] == processor.image_token_id
    assert config["vocab_size"] % 64 == 0 and config["vocab_size"] >= len(processor.tokenizer)
