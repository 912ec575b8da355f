"""Paths and loaders of the parity fixtures (tests/fixtures/parity, a copy of the reference outputs).

A uniquely named module rather than ``conftest``: several test folders have a conftest.py, and
``from conftest import ...`` would resolve to whichever was imported first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "parity"
FIXTURE_MODEL = FIXTURES / "model"
PAD_ID = 486  # the fixture config's pad_token_id
CASE_NAMES = sorted(p.name for p in (FIXTURES / "cases").iterdir())


def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    folder = FIXTURES / "cases" / name
    return (
        json.loads((folder / "case.json").read_text()),
        load_file(folder / "inputs.safetensors"),
        load_file(folder / "outputs.safetensors"),
    )


def left_pad_batch(names):
    """Several cases as one left-padded batch, and each case's reference outputs."""
    cases = [load_case(n) for n in names]
    length = max(c[1]["input_ids"].shape[1] for c in cases)
    ids, attn, pixels, grids, merges = [], [], [], [], []
    for _, inputs, _ in cases:
        n = inputs["input_ids"].shape[1]
        ids.append(F.pad(inputs["input_ids"][0], (length - n, 0), value=PAD_ID))
        attn.append(F.pad(inputs["attention_mask"][0], (length - n, 0), value=0))
        if "pixel_values" in inputs:
            pixels.append(inputs["pixel_values"])
            grids.append(inputs["grid_sizes"])
            merges.append(inputs["merge_sizes"])
    batch = {"input_ids": torch.stack(ids), "attention_mask": torch.stack(attn)}
    if pixels:
        batch.update(pixel_values=torch.cat(pixels), grid_sizes=torch.cat(grids), merge_sizes=torch.cat(merges))
    return batch, [c[2] for c in cases]
