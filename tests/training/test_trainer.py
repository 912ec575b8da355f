"""A training stage end to end on the tiny world: text-only data, bad samples, clipping, resume, outputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from train_helpers import one_stage_recipe, safetensors_weights

from videollama3.training.runner import run_recipe


def read_metrics(recipe) -> list[dict]:
    file = recipe.stage_dir(recipe.stages[0]) / "logs" / "metrics.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()]


def test_text_only_samples_are_trained(tmp_path, tiny_world):
    recipe = one_stage_recipe(
        tmp_path, tiny_world["init"], [tiny_world["text"]], tiny_world["data"], train={"epochs": 2}
    )
    (result,) = run_recipe(recipe)
    assert result.steps == 6 and result.skipped.skipped == 0
    metrics = read_metrics(recipe)
    assert all(m["targets"] > 0 and m["samples"] == 4 for m in metrics)
    assert result.losses[-1] < result.losses[0]
    before, after = safetensors_weights(tiny_world["init"]), safetensors_weights(result.output)
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])


def test_bf16_autocast_with_activation_checkpointing_on_cpu(tmp_path, tiny_world):
    recipe = one_stage_recipe(
        tmp_path, tiny_world["init"], [tiny_world["vqa"], tiny_world["video"]], tiny_world["data"],
        train={"max_steps": 2, "precision": "bf16", "gradient_checkpointing": True},
    )  # fmt: skip
    (result,) = run_recipe(recipe)
    assert all(4 < loss < 8 for loss in result.losses)  # ~log(vocab) for a random model, and finite


def write_bad_annotations(folder, data):
    """Two good samples and one of each kind of bad one."""
    shutil.copy(data / "videos" / "0000.mp4", folder / "good.mp4")
    corrupt = (data / "videos" / "0001.mp4").read_bytes()
    (folder / "corrupt.mp4").write_bytes(corrupt[: len(corrupt) // 3])  # container opens, frames do not decode
    (folder / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    records = [
        {
            "video": ["good.mp4"],
            "conversations": [{"from": "human", "value": "<video>\nWhich way?"}, {"from": "gpt", "value": "Left."}],
        },
        {"conversations": [{"from": "human", "value": "1 plus 1?"}, {"from": "gpt", "value": "2."}]},
        {
            "image": "missing.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}],
        },
        {
            "video": ["garbage.mp4"],
            "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "x"}],
        },
        {
            "video": ["corrupt.mp4"],
            "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "x"}],
        },
        {"video": ["good.mp4"], "conversations": [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "x"}]},
        {
            "video": ["good.mp4"],
            "conversations": [
                {"from": "human", "value": "word " * 300 + "<video>\nWhat?"},
                {"from": "gpt", "value": "x"},
            ],
        },
    ]
    file = folder / "bad.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    return file


def test_bad_samples_are_skipped_and_counted(tmp_path, tiny_world, capsys):
    annotations = write_bad_annotations(tmp_path, tiny_world["data"])
    recipe = one_stage_recipe(
        tmp_path / "run",
        tiny_world["init"],
        [annotations],
        tmp_path,
        data={"model_max_length": 200},
        train={"global_batch_size": 8},
    )
    (result,) = run_recipe(recipe)
    skipped = result.skipped
    assert skipped.seen == 8 and skipped.skipped == 6
    kinds = dict(skipped.counts)
    assert kinds.pop("missing_media") == 1 and kinds.pop("tags") == 1 and kinds.pop("too_long") == 1
    assert kinds.pop("format") == 1  # the unparsable line
    assert sum(kinds.values()) == 2 and set(kinds) <= {"corrupt_media", "error"}  # garbage and truncated videos
    (metrics,) = read_metrics(recipe)
    assert metrics["samples"] == 2 and metrics["skipped"] == 6  # trained on the good two, nothing substituted
    out = capsys.readouterr().out
    assert "skipped 6 of 8 samples" in out and "bad.jsonl:3" in out


def test_gradient_clipping_is_applied(tmp_path, tiny_world, monkeypatch):
    from videollama3.training import trainer as trainer_module

    norms_at_step = []
    original = trainer_module.build_optimizer

    def build_with_probe(model, config):
        optimizer = original(model, config)

        def probe(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norms_at_step.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        optimizer.register_step_pre_hook(probe)
        return optimizer

    monkeypatch.setattr(trainer_module, "build_optimizer", build_with_probe)
    recipe = one_stage_recipe(
        tmp_path,
        tiny_world["init"],
        [tiny_world["vqa"]],
        tiny_world["data"],
        optim={"max_grad_norm": 0.05},
        train={"max_steps": 2},
    )
    run_recipe(recipe)
    logged = [m["grad_norm"] for m in read_metrics(recipe)]
    assert all(n > 0.05 for n in logged)  # the raw norm is larger...
    assert all(n <= 0.05 * 1.001 for n in norms_at_step)  # ...and the optimizer saw it clipped


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_interrupted_and_resumed_run_gives_the_same_loss_curve(tmp_path, tiny_world, optimizer):
    sources = [tiny_world["vqa"], tiny_world["video"], tiny_world["text"]]
    settings = {
        "train": {"global_batch_size": 6, "save_steps": 1, "keep_last": 2},
        "data": {"use_token_compression": True},
    }
    full = one_stage_recipe(
        tmp_path / "full", tiny_world["init"], sources, tiny_world["data"],
        overrides=[f"optim.optimizer={optimizer}"], **settings,
    )  # fmt: skip
    (reference,) = run_recipe(full)
    assert reference.steps == 6

    class Crash(RuntimeError):
        pass

    def crash_after_step_3(step, _):
        if step == 3:
            raise Crash

    # The interrupted run loads samples in 2 worker processes: the order must not depend on it.
    interrupted = one_stage_recipe(
        tmp_path / "resumed", tiny_world["init"], sources, tiny_world["data"],
        overrides=["data.num_workers=2", f"optim.optimizer={optimizer}"], **settings,
    )  # fmt: skip
    with pytest.raises(Crash):
        run_recipe(interrupted, callbacks=[crash_after_step_3])
    checkpoints = interrupted.stage_dir(interrupted.stages[0]) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002", "step-00000003"]  # keep_last = 2
    (checkpoints / ".step-00000004.tmp-1").mkdir()  # a save that was interrupted: never resumed from
    (resumed,) = run_recipe(interrupted)
    assert resumed.steps == 3  # steps 4..6, from the checkpoint of step 3
    torch.testing.assert_close(resumed.losses, reference.losses[3:], rtol=1e-6, atol=0)
    curve = [m["loss"] for m in read_metrics(interrupted)]
    torch.testing.assert_close(curve, reference.losses, rtol=1e-6, atol=0)  # the log holds one clean curve
    final_a, final_b = safetensors_weights(reference.output), safetensors_weights(resumed.output)
    for name, tensor in final_a.items():
        torch.testing.assert_close(final_b[name], tensor, rtol=1e-5, atol=1e-6)


def test_final_output_is_an_official_checkpoint_with_processor_files(tmp_path, tiny_world):
    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.processing import VideoLLaMA3Processor

    recipe = one_stage_recipe(
        tmp_path,
        tiny_world["init"],
        [tiny_world["vqa"]],
        tiny_world["data"],
        train={"max_steps": 1, "save_dtype": "bf16"},
    )
    (result,) = run_recipe(recipe)
    files = {p.name for p in result.output.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert {"preprocessor_config.json", "processor_config.json", "generation_config.json"} <= files
    config = json.loads((result.output / "config.json").read_text())
    assert config["model_type"] == "videollama3_qwen2" and config["use_cache"] is True
    assert config["dtype"] == "bfloat16"
    weights = safetensors_weights(result.output)
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert any(k.startswith("model.vision_encoder.") for k in weights) and any(
        k.startswith("model.mm_projector.readout") for k in weights
    )
    model = VideoLLaMA3ForCausalLM.from_pretrained(result.output)
    processor = VideoLLaMA3Processor.from_pretrained(result.output)
    conversation = [{"role": "user", "content": "What is 2 plus 2?"}]
    inputs = processor(conversation=conversation, add_generation_prompt=True, return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape == (1, 3)
