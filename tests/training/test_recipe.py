"""Recipes: the packaged ones carry the published settings; overrides and errors."""

from __future__ import annotations

import pytest

from videollama3.errors import ConfigError
from videollama3.training.recipe import load_recipe, packaged_recipes, recipe_from_dict


def test_packaged_recipes():
    assert {"synthetic", "synthetic-video-only", "tiny", "videollama3-2b", "videollama3-7b"} <= set(packaged_recipes())


def test_train_help_names_every_packaged_recipe(capsys):
    from videollama3.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in packaged_recipes())


@pytest.mark.parametrize(
    ("name", "llm"), [("videollama3-2b", "Qwen/Qwen2.5-1.5B-Instruct"), ("videollama3-7b", "Qwen/Qwen2.5-7B-Instruct")]
)
def test_published_settings(name, llm):
    recipe = load_recipe(name)
    assert [s.name for s in recipe.stages] == ["stage1", "stage2", "stage3", "stage4"]
    assert recipe.init.llm == llm and recipe.stages[0].init is None
    for index, stage in enumerate(recipe.stages):
        d, o, t = stage.data, stage.optim, stage.train
        lrs = o.lr.as_dict()
        if index == 0:
            assert lrs == {"llm": None, "projector": 1e-3, "vision_encoder": 1e-5}
        else:
            assert lrs == {"llm": 1e-5, "projector": 1e-5, "vision_encoder": 2e-6}
            # every later stage starts from the previous stage's final model
            assert recipe.stage_init(index).checkpoint == str(recipe.stage_output(recipe.stages[index - 1]))
        assert (o.warmup_ratio, o.schedule, o.weight_decay) == (0.03, "cosine", 0.0)
        assert (d.model_max_length, d.mm_max_length, d.fps, d.max_frames) == (16384, 10240, 1, 180)
        assert d.video_merge_size == 2
        assert d.image_merge_size == (2 if stage.name == "stage4" else 1)
        assert d.use_token_compression == (stage.name in ("stage3", "stage4"))
        assert (t.global_batch_size, t.epochs, t.precision) == (128, 1, "bf16")


def test_tiny_recipe_mirrors_the_stage_structure():
    recipe = load_recipe("tiny", ["output_dir=/tmp/somewhere"])
    assert recipe.init.llm == "/tmp/somewhere/synthetic/base/llm"  # ${output_dir} interpolated after overrides
    assert recipe.stages[0].optim.lr.llm is None
    assert [s.data.use_token_compression for s in recipe.stages] == [False, False, True, True]
    assert [s.data.image_merge_size for s in recipe.stages] == [1, 1, 1, 2]


def test_overrides_apply_to_all_stages_one_stage_or_the_top_level():
    recipe = load_recipe(
        "videollama3-2b",
        [
            "train.max_steps=10",
            "stage2.optim.lr.llm=2e-5",
            "seed=7",
            "stage1.optim.lr.vision_encoder=null",
            "data.num_workers=0",
            "train.report_to=wandb",
        ],
    )
    assert [s.train.max_steps for s in recipe.stages] == [10] * 4
    assert [s.optim.lr.llm for s in recipe.stages] == [None, 2e-5, 1e-5, 1e-5]
    assert recipe.stages[0].optim.lr.vision_encoder is None
    assert recipe.seed == 7 and recipe.stages[3].data.num_workers == 0
    assert recipe.stages[0].train.report_to == ["wandb"]


@pytest.mark.parametrize(
    "override",
    ["train.max_stepz=3", "train.precision=fp16", "train.global_batch_size=lots", "stage9.train.epochs=1", "nokey"],
)
def test_bad_overrides_are_errors(override):
    with pytest.raises(ConfigError):
        load_recipe("tiny", [override])


def test_structural_errors():
    with pytest.raises(ConfigError, match="stages"):
        recipe_from_dict({"name": "x", "output_dir": "y", "stages": []})
    with pytest.raises(ConfigError, match="unique"):
        recipe_from_dict({"name": "x", "output_dir": "y", "stages": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="needs an `init`"):
        recipe_from_dict({"name": "x", "output_dir": "y", "stages": [{"name": "a"}]}).stage_init(0)


def test_print_resolved_recipe(capsys):
    from videollama3.cli import main

    assert main(["train", "tiny", "--print", "--set", "train.max_steps=2"]) == 0
    assert "max_steps: 2" in capsys.readouterr().out
