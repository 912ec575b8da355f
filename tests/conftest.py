"""Shared test helpers: the parity fixtures beside the checkout, and tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "parity"
FIXTURE_MODEL = FIXTURES / "model"
CASE_NAMES = sorted(p.name for p in (FIXTURES / "cases").iterdir()) if (FIXTURES / "cases").is_dir() else []


def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    folder = FIXTURES / "cases" / name
    return (
        json.loads((folder / "case.json").read_text()),
        load_file(folder / "inputs.safetensors"),
        load_file(folder / "outputs.safetensors"),
    )


@pytest.fixture(scope="session")
def fixture_model():
    from videollama3 import VideoLLaMA3ForCausalLM

    if not FIXTURE_MODEL.is_dir():
        pytest.skip(f"parity fixtures not found at {FIXTURES}")
    return VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL).eval()
