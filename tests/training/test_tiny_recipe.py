"""The packaged ``tiny`` recipe: four stages back to back, each from the previous one's output."""

from __future__ import annotations

import json

import torch
from train_helpers import safetensors_weights

from videollama3.training.recipe import load_recipe
from videollama3.training.runner import run_recipe


def test_tiny_recipe_runs_all_four_stages(tmp_path):
    recipe = load_recipe(
        "tiny",
        [
            f"output_dir={tmp_path}",
            "world.samples=8",
            "train.max_steps=3",
            "data.num_workers=0",
            "train.report_to=[]",
            "train.progress_bar=false",
            "train.gradient_checkpointing=false",
        ],
    )
    results = run_recipe(recipe)
    assert [r.name for r in results] == ["stage1", "stage2", "stage3", "stage4"]
    for result in results:
        assert result.steps == 3 and all(loss == loss for loss in result.losses)  # no NaN
        assert (result.output / "config.json").is_file() and (result.output / "processor_config.json").is_file()

    # Stage 1 trains the vision encoder and the projector; the LLM (tied head included) stays as initialised.
    init, stage1 = safetensors_weights(tmp_path / "stage1" / "init"), safetensors_weights(results[0].output)
    for name, tensor in init.items():
        changed = not torch.equal(stage1[name], tensor)
        if name.startswith(("model.vision_encoder.", "model.mm_projector.")) and name.endswith("weight"):
            assert changed or "norm" in name, name
        elif not name.startswith(("model.vision_encoder.", "model.mm_projector.")):
            assert not changed, name
    # Later stages train the LLM too.
    stage2 = safetensors_weights(results[1].output)
    assert not torch.equal(stage2["model.embed_tokens.weight"], stage1["model.embed_tokens.weight"])
    # Pruning is recorded in the model config from stage 3 on; the saved processor keeps its inference
    # settings (images unmerged) although stage 4 trained with 2x2-merged images.
    configs = [json.loads((r.output / "config.json").read_text()) for r in results]
    assert [c["use_token_compression"] for c in configs] == [False, False, True, True]
    assert json.loads((results[3].output / "processor_config.json").read_text())["image_merge_size"] == 1
    # Re-running skips finished stages.
    assert run_recipe(recipe) == []


def test_the_world_key_replaces_the_old_synthetic_key():
    """Recipes of earlier releases wrote the tiny world under `synthetic:`; they are told what replaced it."""
    import pytest
    import yaml

    from videollama3.errors import ConfigError
    from videollama3.training.recipe import recipe_from_dict, resolve_recipe_path

    raw = yaml.safe_load(resolve_recipe_path("tiny").read_text())
    old = {**{k: v for k, v in raw.items() if k != "world"}, "synthetic": {"num_samples": 32}}
    with pytest.raises(ConfigError, match=r"`synthetic:` is now `world:` with `size: tiny`"):
        recipe_from_dict(old)
    with pytest.raises(ConfigError, match=r"--set synthetic.num_samples=8: .*`world.samples`"):
        load_recipe("tiny", ["synthetic.num_samples=8"])
    with pytest.raises(ConfigError, match=r"world.images applies to `size: full` only"):
        load_recipe("tiny", ["world.images=10"])
    with pytest.raises(ConfigError, match=r"world.samples applies to `size: tiny` only"):
        load_recipe("synthetic", ["world.samples=10"])
    recipe = load_recipe("tiny", ["output_dir=/tmp/somewhere"])
    assert (recipe.world.size, recipe.world.samples) == ("tiny", 32)
    assert recipe.world.init_dir == "/tmp/somewhere/synthetic/base" and load_recipe("synthetic").world.size == "full"
