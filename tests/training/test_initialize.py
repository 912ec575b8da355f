"""Assembling a VideoLLaMA3 checkpoint from a Qwen2 LLM and a SigLIP / VideoLLaMA3 vision encoder."""

from __future__ import annotations

import torch
from train_helpers import FIXTURE_MODEL, safetensors_weights

from videollama3 import VideoLLaMA3ForCausalLM
from videollama3.training.initialize import build_initial_checkpoint


def test_qwen_plus_siglip(tiny_world):
    init = tiny_world["init"]
    llm, siglip, ours = (
        safetensors_weights(tiny_world["llm"]),
        safetensors_weights(tiny_world["siglip"]),
        safetensors_weights(init),
    )
    for name, tensor in llm.items():  # the LLM verbatim (its tied head has no lm_head.weight)
        assert torch.equal(ours[name], tensor), name
    assert "lm_head.weight" not in ours
    mapped = {k.removeprefix("vision_model."): v for k, v in siglip.items()}
    assert "embeddings.position_embedding.weight" in mapped and any(k.startswith("head.") for k in mapped)
    vision = {
        k.removeprefix("model.vision_encoder."): v for k, v in ours.items() if k.startswith("model.vision_encoder.")
    }
    assert set(vision) == {k for k in mapped if not k.startswith(("head.", "embeddings.position_embedding"))}
    for name, tensor in vision.items():
        assert torch.equal(tensor, mapped[name]), name
    model = VideoLLaMA3ForCausalLM.from_pretrained(init)
    from videollama3.processing import VideoLLaMA3Processor

    processor = VideoLLaMA3Processor.from_pretrained(init)
    assert model.config.image_token_index == processor.image_token_id
    assert processor.tokenizer.convert_tokens_to_ids("<|stream_end|>") == processor.image_token_id + 2
    assert (processor.image_merge_size, processor.video_merge_size) == (1, 2)


def test_vision_encoder_from_a_videollama3_checkpoint(tmp_path, tiny_world):
    """The 7B recipe starts its encoder from a trained VideoLLaMA3 model: its tuned encoder is taken as is."""
    out = build_initial_checkpoint(tiny_world["llm"], FIXTURE_MODEL, tmp_path / "init", dtype=torch.float32)
    ours, source = safetensors_weights(out), safetensors_weights(FIXTURE_MODEL)
    vision = {k: v for k, v in source.items() if k.startswith("model.vision_encoder.")}
    assert vision and all(torch.equal(ours[k], v) for k, v in vision.items())
    assert VideoLLaMA3ForCausalLM.from_pretrained(out).config.vision_config.hidden_size == 64


def test_an_llm_without_spare_rows_grows_its_vocabulary(tmp_path, tiny_world):
    """SmolLM2's embedding has exactly as many rows as its tokenizer: the added tokens get new rows (the mean
    of the old ones), rounded up to a multiple of 64, in the embedding and in an untied head."""
    import json
    import shutil

    from safetensors.torch import save_file

    from videollama3.processing import VideoLLaMA3Processor

    llm = tmp_path / "llm"
    shutil.copytree(tiny_world["llm"], llm)
    weights = safetensors_weights(llm)
    config = json.loads((llm / "config.json").read_text())
    exact = len(VideoLLaMA3Processor.from_pretrained(tiny_world["init"]).tokenizer) - 3  # before the added tokens
    embed = weights["model.embed_tokens.weight"][:exact].clone()
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = embed.clone() * 2
    config.update(vocab_size=exact, tie_word_embeddings=False)
    for file in llm.glob("*.safetensors"):
        file.unlink()
    save_file(weights, str(llm / "model.safetensors"))
    (llm / "config.json").write_text(json.dumps(config))

    out = build_initial_checkpoint(llm, tiny_world["siglip"], tmp_path / "init", dtype=torch.float32)
    ours = safetensors_weights(out)
    rows = -(-(exact + 3) // 64) * 64
    for name, source in (("model.embed_tokens.weight", embed), ("lm_head.weight", embed * 2)):
        assert ours[name].shape == (rows, embed.shape[1])
        assert torch.equal(ours[name][:exact], source)
        assert torch.allclose(ours[name][exact:], source.mean(0).expand(rows - exact, -1))
    model = VideoLLaMA3ForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == rows
    assert model.config.image_token_index == exact  # the first added token
