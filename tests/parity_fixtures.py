"""Paths and loaders of the parity fixtures beside the checkout.

A uniquely named module rather than ``conftest``: several test folders have a conftest.py, and
``from conftest import ...`` would resolve to whichever was imported first.
"""

from __future__ import annotations

import json
from pathlib import Path

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
