"""LoRA fine-tuning from a checkpoint, and ``videollama3 export-lora`` merging it into a normal checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import one_stage_recipe, safetensors_weights

from videollama3.training.lora import NON_LORA_FILE, target_regex
from videollama3.training.recipe import LoraSettings
from videollama3.training.runner import run_recipe

pytest.importorskip("peft")


def test_target_regex_selects_llm_layers_and_optionally_the_vision_encoder():
    import re

    llm_only = re.compile(target_regex(LoraSettings(targets=["q_proj", "down_proj"])))
    assert llm_only.fullmatch("model.layers.3.self_attn.q_proj")
    assert llm_only.fullmatch("model.layers.0.mlp.down_proj")
    assert not llm_only.fullmatch("model.layers.0.mlp.up_proj")
    assert not llm_only.fullmatch("model.vision_encoder.encoder.layers.0.self_attn.q_proj")
    both = re.compile(target_regex(LoraSettings(vision_encoder=True)))
    assert both.fullmatch("model.vision_encoder.encoder.layers.1.mlp.fc1")
    assert not both.fullmatch("model.mm_projector.readout.0")


def test_lora_stage_and_export(tmp_path, tiny_world):
    from peft import PeftModel

    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.cli import main
    from videollama3.training.lora import _peft_deprecations_silenced

    base_pruning = json.loads((tiny_world["init"] / "config.json").read_text())["use_token_compression"]
    recipe = one_stage_recipe(
        tmp_path / "run",
        tiny_world["init"],
        [tiny_world["vqa"], tiny_world["text"]],
        tiny_world["data"],
        lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
        optim={"lr": {"llm": 1e-2, "projector": 1e-3, "vision_encoder": None}},
        train={"max_steps": 3, "gradient_checkpointing": True},
        data={"use_token_compression": not base_pruning},  # the stage's setting, not the base's
    )
    (result,) = run_recipe(recipe)
    adapter = result.output
    files = {p.name for p in adapter.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        NON_LORA_FILE,
        "tokenizer.json",
        "processor_config.json",
    } <= files
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_world["init"]) and config["r"] == 4
    non_lora = safetensors_weights_file(adapter / NON_LORA_FILE)
    assert set(non_lora) == {k for k in safetensors_weights(tiny_world["init"]) if k.startswith("model.mm_projector.")}

    merged_dir = tmp_path / "merged"
    assert main(["export-lora", str(adapter), str(merged_dir), "--dtype", "fp32"]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= {
        p.name for p in merged_dir.iterdir()
    }
    # The merged config says what the stage trained with: a pruned model evaluated unpruned answers worse.
    assert json.loads((merged_dir / "config.json").read_text())["use_token_compression"] is (not base_pruning)
    base, merged = safetensors_weights(tiny_world["init"]), safetensors_weights(merged_dir)
    assert set(merged) <= set(base) | {"lm_head.weight"}
    assert not torch.equal(
        merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(merged["model.layers.0.input_layernorm.weight"], base["model.layers.0.input_layernorm.weight"])
    assert torch.equal(
        merged["model.vision_encoder.post_layernorm.weight"], base["model.vision_encoder.post_layernorm.weight"]
    )
    torch.testing.assert_close(
        merged["model.mm_projector.readout.0.weight"], non_lora["model.mm_projector.readout.0.weight"]
    )

    # The merged checkpoint computes what base + adapters compute.
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    plain = VideoLLaMA3ForCausalLM.from_pretrained(merged_dir).eval()
    base_model = VideoLLaMA3ForCausalLM.from_pretrained(tiny_world["init"])
    base_model.load_state_dict(non_lora, strict=False)
    with _peft_deprecations_silenced():  # PEFT's own use of a deprecated transformers name
        with_adapter = PeftModel.from_pretrained(base_model, str(adapter)).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            plain(input_ids=ids).logits, with_adapter(input_ids=ids).logits, rtol=1e-4, atol=1e-5
        )


def safetensors_weights_file(file):
    from safetensors.torch import load_file

    return load_file(str(file))
