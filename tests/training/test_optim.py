"""Learning rates per module group, freezing per stage, weight decay groups and the schedule."""

from __future__ import annotations

import math

import pytest

from videollama3.training.optim import apply_trainability, build_optimizer, lr_factor, module_group, parameter_groups
from videollama3.training.recipe import LearningRates, OptimConfig, load_recipe


@pytest.fixture()
def model(fixture_model):
    """The fixture checkpoint (its LM head is untied), fresh trainability flags."""
    for p in fixture_model.parameters():
        p.requires_grad_(True)
    yield fixture_model
    for p in fixture_model.parameters():
        p.requires_grad_(True)


def test_module_groups():
    assert module_group("model.vision_encoder.encoder.layers.0.mlp.fc1.weight") == "vision_encoder"
    assert module_group("model.mm_projector.readout.0.bias") == "projector"
    assert module_group("lm_head.weight") == "llm"
    assert module_group("model.embed_tokens.weight") == "llm"
    assert module_group("base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight") == "llm"


@pytest.mark.parametrize("recipe_name", ["videollama3-2b", "videollama3-7b"])
def test_freezing_per_stage(model, recipe_name):
    recipe = load_recipe(recipe_name)
    assert not model.config.tie_word_embeddings  # an untied head must follow the LLM
    for stage in recipe.stages:
        apply_trainability(model, stage.optim.lr)
        by_group: dict[str, set[bool]] = {}
        for name, p in model.named_parameters():
            by_group.setdefault(module_group(name), set()).add(p.requires_grad)
        if stage.name == "stage1":
            assert by_group == {"llm": {False}, "projector": {True}, "vision_encoder": {True}}
            assert not model.lm_head.weight.requires_grad
            optimizer = build_optimizer(model, stage.optim)
            assert {g["module_group"]: g["lr"] for g in optimizer.param_groups} == {
                "projector": 1e-3,
                "vision_encoder": 1e-5,
            }
        else:
            assert by_group == {"llm": {True}, "projector": {True}, "vision_encoder": {True}}
            assert model.lm_head.weight.requires_grad
            optimizer = build_optimizer(model, stage.optim)
            assert {g["module_group"]: g["lr"] for g in optimizer.param_groups} == {
                "llm": 1e-5,
                "projector": 1e-5,
                "vision_encoder": 2e-6,
            }


def test_no_weight_decay_on_norms_and_biases(model):
    config = OptimConfig(lr=LearningRates(1e-5, 1e-5, 1e-5), weight_decay=0.1)
    apply_trainability(model, config.lr)
    groups = parameter_groups(model, config)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            is_norm_or_bias = p.ndim < 2
            assert (id(p) in decayed) != is_norm_or_bias, names[id(p)]
    assert any("norm" in names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_cosine_schedule_with_warmup():
    total, warmup = 100, 3  # ceil(0.03 * 100)
    assert lr_factor(0, total, warmup, "cosine") == 0.0
    assert lr_factor(1, total, warmup, "cosine") == pytest.approx(1 / 3)
    assert lr_factor(3, total, warmup, "cosine") == 1.0
    middle = warmup + (total - warmup) / 2
    assert lr_factor(int(middle), total, warmup, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 48 / 97)))
    assert lr_factor(total, total, warmup, "cosine") == pytest.approx(0.0)
    assert lr_factor(total, total, warmup, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(50, total, 0, "constant") == 1.0
