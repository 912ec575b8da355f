"""The model against the reference outputs stored in the parity fixtures (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_fixtures import CASE_NAMES, left_pad_batch, load_case
from videollama3.errors import InputError
from videollama3.model.pruning import pruning_mask
from videollama3.model.vision_encoder import merge_tokens


@pytest.mark.parametrize("name", CASE_NAMES)
def test_parity_with_reference(fixture_model, name):
    case, inputs, outputs = load_case(name)
    model = fixture_model
    with torch.no_grad():
        if "pixel_values" in inputs:
            features = model.vision_encoder(inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"])
            torch.testing.assert_close(features, outputs["vision_features"], atol=1e-5, rtol=0)
            projected = model.mm_projector(features)
            torch.testing.assert_close(projected, outputs["projected_features"], atol=1e-5, rtol=0)
            mask = model.compute_compression_mask(inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"])
            assert torch.equal(mask, outputs["compression_mask"])
        logits = model(**inputs).logits[0]
        assert logits.shape == outputs["logits"].shape
        torch.testing.assert_close(logits, outputs["logits"], atol=1e-4, rtol=0)
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated[0].tolist() == outputs["generated_ids"].tolist()


def test_already_pruned_prompt_gives_same_logits(fixture_model):
    """Our processor removes pruned placeholders itself; the model must then not prune again."""
    _, inputs, outputs = load_case("video_static_pruned")
    mask = outputs["compression_mask"]
    ids = inputs["input_ids"][0]
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[ids == fixture_model.config.image_token_index] = mask
    pruned = {**inputs, "input_ids": ids[keep][None], "attention_mask": inputs["attention_mask"][0][keep][None]}
    with torch.no_grad():
        logits = fixture_model(**pruned, compression_mask=mask).logits[0]
    torch.testing.assert_close(logits, outputs["logits"], atol=1e-4, rtol=0)


def test_batch_of_different_media_matches_single_runs(fixture_model):
    batch, expected = left_pad_batch(["image_single", "video_static_pruned", "text_multiturn"])
    with torch.no_grad():
        logits = fixture_model(**batch).logits
        generated = fixture_model.generate(**batch, max_new_tokens=6, do_sample=False)
    for row, out in enumerate(expected):
        n = out["logits"].shape[0]
        torch.testing.assert_close(logits[row, -n:], out["logits"], atol=1e-4, rtol=0)
        assert generated[row].tolist() == out["generated_ids"].tolist()


def test_mismatched_placeholders_raise(fixture_model):
    _, inputs, _ = load_case("image_single")
    ids = inputs["input_ids"][0]
    first_image = int((ids == fixture_model.config.image_token_index).nonzero()[0])
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[first_image : first_image + 3] = False  # three placeholders fewer than the image has tokens
    bad = {**inputs, "input_ids": ids[keep][None], "attention_mask": inputs["attention_mask"][0][keep][None]}
    with pytest.raises(InputError, match="<image> tokens"):
        fixture_model(**bad)
    with pytest.raises(InputError, match="no pixel_values"):
        fixture_model(input_ids=inputs["input_ids"])


def test_right_padded_batch_generation_is_refused(fixture_model):
    batch, _ = left_pad_batch(["text_multiturn", "image_tiny_upscaled"])
    right = {**batch, "attention_mask": batch["attention_mask"].flip(-1)}
    with pytest.raises(InputError, match="left padding"):
        fixture_model.generate(**right, max_new_tokens=1)


def test_pruning_off_in_config_keeps_every_token(fixture_model):
    _, inputs, _ = load_case("video_static_pruned")
    fixture_model.config.use_token_compression = False
    try:
        with torch.no_grad():
            logits = fixture_model(**inputs).logits
    finally:
        fixture_model.config.use_token_compression = True
    assert logits.shape[1] == inputs["input_ids"].shape[1]


def test_merge_tokens_matches_bilinear_resize():
    torch.manual_seed(0)
    for m, (t, gh, gw) in [(2, (3, 4, 6)), (3, (2, 6, 9)), (1, (1, 3, 5))]:
        raster = torch.randn(t, 8, gh, gw)  # (t, D, gh, gw)
        blocks = raster.view(t, 8, gh // m, m, gw // m, m).permute(0, 2, 4, 3, 5, 1).reshape(-1, 8)
        expected = F.interpolate(raster, size=(gh // m, gw // m), mode="bilinear", align_corners=False)
        got = merge_tokens(blocks, torch.tensor([[t, gh, gw]]), torch.tensor([m]))
        torch.testing.assert_close(got, expected.permute(0, 2, 3, 1).reshape(-1, 8), atol=1e-6, rtol=0)


def test_pruning_keeps_min_tokens_for_static_frames():
    pixels = torch.zeros(3 * 4 * 4, 588)  # 3 identical frames of 4x4 patches, merge 2 -> 4 tokens per frame
    mask = pruning_mask(pixels, torch.tensor([[3, 4, 4]]), torch.tensor([2]), min_tokens=1)
    assert mask.view(3, 4).sum(-1).tolist() == [4, 1, 1]
    assert mask.view(3, 4)[1:, 0].all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pruning_in_chunks_of_frames_is_the_one_shot_rule(monkeypatch, dtype):
    """The frame differences are taken a few frames at a time (memory); the mask is the reference formula's."""
    from videollama3.model import pruning

    torch.manual_seed(0)
    t, gh, gw, m = 9, 4, 6, 2
    pixels = (torch.randn(t * gh * gw, 588) * 3.5e-4).to(dtype)  # about half the tokens above the threshold
    frames = pixels.float().view(t, (gh // m) * (gw // m), -1)
    keep = ((frames[1:] - frames[:-1]).abs().mean(dim=-1) * 255.0) > 0.1
    keep = torch.cat([torch.ones_like(keep[:1]), keep])
    keep[keep.sum(-1) == 0, 0] = True
    assert 0 < keep[1:].float().mean() < 1
    monkeypatch.setattr(pruning, "_DIFF_CHUNK_ELEMENTS", 2 * frames[0].numel())  # chunks of 2 frame pairs
    got = pruning_mask(pixels, torch.tensor([[t, gh, gw]]), torch.tensor([m]))
    assert torch.equal(got, keep.flatten())


def test_training_loss_and_gradient_checkpointing():
    """Labels follow the pruned sequence; activation checkpointing changes memory, not the gradients."""
    from parity_fixtures import FIXTURE_MODEL
    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.training.trainer import enable_activation_checkpointing

    _, inputs, _ = load_case("video_static_pruned")
    labels = inputs["input_ids"].clone()
    labels[labels == 488] = -100
    grads = []
    for checkpointing in (False, True):
        model = VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL).train()
        if checkpointing:
            enable_activation_checkpointing(model)
            assert model.vision_encoder.gradient_checkpointing and model.model.gradient_checkpointing
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        grads.append((loss.detach(), model.vision_encoder.embeddings.patch_embedding.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-5)


def test_vision_encoder_uses_its_own_initializer_range():
    """The LLM and projector draw from ``initializer_range``; the encoder from its own config's."""
    from videollama3 import VideoLLaMA3Config, VideoLLaMA3ForCausalLM

    config = VideoLLaMA3Config(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        image_token_index=200,
        initializer_range=0.1,
        vision_encoder_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "patch_size": 14,
            "initializer_range": 0.01,
        },
    )
    torch.manual_seed(0)
    model = VideoLLaMA3ForCausalLM(config)
    llm = [model.model.embed_tokens.weight, model.model.layers[0].mlp.up_proj.weight]
    projector = [p for n, p in model.model.mm_projector.named_parameters() if n.endswith("weight")]
    encoder = [model.model.vision_encoder.encoder.layers[0].mlp.fc1.weight]
    encoder.append(model.model.vision_encoder.embeddings.patch_embedding.weight)
    for weight in llm + projector:
        assert weight.std().item() == pytest.approx(0.1, rel=0.1)
    for weight in encoder:
        assert weight.std().item() == pytest.approx(0.01, rel=0.1)
