"""Fixtures of the synthetic-world tests."""

from __future__ import annotations

import pytest

from videollama3.synthetic.model import ModelSize


@pytest.fixture(scope="session")
def tiny_size() -> ModelSize:
    """A model small enough to train for a few steps in seconds."""
    return ModelSize(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_num_hidden_layers=1,
        vision_num_attention_heads=2,
    )
