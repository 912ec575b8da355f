"""Two processes (torchrun, FSDP2 over gloo) train exactly as one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
import yaml
from train_helpers import one_stage_recipe, safetensors_weights

from videollama3.training.recipe import load_recipe
from videollama3.training.runner import run_recipe

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")


def run_cli(args: list[str], cwd) -> None:
    # Two CPU processes over gloo on any machine (a one-GPU machine cannot give each rank a GPU).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def losses(output_dir) -> list[float]:
    file = output_dir / "stage" / "logs" / "metrics.jsonl"
    return [json.loads(line)["loss"] for line in file.read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_processes_match_one(tmp_path, tiny_world, optimizer):
    # Mixed modalities and a small packing budget: ranks get text-only packs (the vision encoder must still
    # run under FSDP) and different numbers of micro-batches (placeholders keep the collectives aligned).
    # Muon orthogonalises whole matrices: each rank gathers its shards' momentum and keeps its own rows.
    recipe = one_stage_recipe(
        tmp_path / "unused",
        tiny_world["init"],
        [tiny_world["vqa"], tiny_world["video"], tiny_world["text"]],
        tiny_world["data"],
        data={"model_max_length": 256, "use_token_compression": True},
        train={"global_batch_size": 6, "micro_batch_tokens": 256, "max_steps": 3, "gradient_checkpointing": True},
        overrides=[f"optim.optimizer={optimizer}"],
    )
    file = tmp_path / "recipe.yaml"
    file.write_text(yaml.safe_dump(recipe.to_dict()))
    one, two = tmp_path / "one", tmp_path / "two"
    (reference,) = run_recipe(load_recipe(file, [f"output_dir={one}"]))  # one process, no FSDP
    run_cli(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "videollama3",
            "train",
            str(file),
            "--set",
            f"output_dir={two}",
        ],
        tmp_path,
    )
    assert len(losses(one)) == 3 and losses(one) == reference.losses
    torch.testing.assert_close(losses(two), losses(one), rtol=1e-5, atol=0)
    single, sharded = safetensors_weights(one / "stage" / "final"), safetensors_weights(two / "stage" / "final")
    assert single.keys() == sharded.keys()
    # Summation order differs across ranks, and Adam divides by sqrt(v): where a gradient is nearly zero the
    # rounding differences grow to ~1e-5 of weights that moved by ~6e-3 in three steps. 1e-4 still catches
    # any real difference (a lost shard, an unreduced gradient, a wrong normalisation).
    for name, tensor in single.items():
        torch.testing.assert_close(sharded[name], tensor, rtol=0, atol=1e-4, msg=name)


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from videollama3.distributed import init_distributed
    from videollama3.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="LOCAL_RANK=1 has no GPU: 1 visible"):
        init_distributed()
