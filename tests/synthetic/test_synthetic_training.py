"""A reduced ``synthetic`` recipe trains on the generator's output and the loss falls (well under a minute)."""

from __future__ import annotations

import math

import pytest

from videollama3.synthetic.model import build_initial_model
from videollama3.training.recipe import load_recipe
from videollama3.training.runner import run_recipe


@pytest.mark.timeout(120)
def test_reduced_recipe_loss_falls(tmp_path, tiny_size):
    out = tmp_path / "run"
    build_initial_model(out / "init", tiny_size, seed=0, corpus_scale=0.02)
    overrides = [
        f"output_dir={out}",
        # The recipe renders this reduced world itself (its data check compares the spec).
        "world.images=12",
        "world.videos=4",
        "world.texts=8",
        "world.questions=4",
        "world.perception_steps=0",  # the init above, built without perception pretraining
        f"export_dir={tmp_path / 'exported'}",  # never the bundled model's folder
        "train.global_batch_size=4",
        "train.micro_batch_tokens=1024",
        "train.epochs=20",
        "train.progress_bar=false",
        "train.save_steps=0",
        "data.num_workers=0",
        "stage3.optim.lr={llm: 1.0e-2, projector: 1.0e-2, vision_encoder: 3.0e-3}",
        "optim.warmup_ratio=0",
        "stage1.train.max_steps=2",
        "stage2.train.max_steps=2",
        "stage3.train.max_steps=16",
        "stage4.train.max_steps=2",
        # The recipe's weights are for thousands of samples: the reduced run uses every sample once.
        "stage1.data.sources=[{path: " + str(out / "data" / "image_captions.jsonl") + "}]",
        "stage2.data.sources=[{path: " + str(out / "data" / "video_captions.jsonl") + "}]",
        "stage3.data.sources=[{path: " + str(out / "data" / "image_qa.jsonl") + "}]",
        "stage4.data.sources=[{path: " + str(out / "data" / "video_qa.jsonl") + "}]",
    ]
    recipe = load_recipe("synthetic", overrides)
    assert [s.name for s in recipe.stages] == ["stage1", "stage2", "stage3", "stage4"]
    assert recipe.stages[0].optim.lr.llm is None and recipe.stages[2].data.use_token_compression
    results = run_recipe(recipe)
    assert [r.name for r in results] == ["stage1", "stage2", "stage3", "stage4"]
    losses = results[2].losses
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses
    assert (out / "stage4" / "final" / "model.safetensors").is_file()
    assert (out / "stage4" / "final" / "tokenizer_config.json").is_file()
    # The last stage's model is exported (for the real recipe: the bundled model's folder).
    exported = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert exported == sorted(p.name for p in (out / "stage4" / "final").iterdir())
