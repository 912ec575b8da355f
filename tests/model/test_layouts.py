"""Loading, saving and converting checkpoints; broken checkpoints fail with a clear error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from parity_fixtures import FIXTURE_MODEL, load_case
from videollama3 import CheckpointError, VideoLLaMA3Config, VideoLLaMA3ForCausalLM
from videollama3.cli import main as cli_main
from videollama3.model.layouts import convert_checkpoint

VIDEO_TOKEN = 511  # an unused id of the fixture vocabulary, for transformers' separate video placeholder


@pytest.fixture()
def model_dir(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(FIXTURE_MODEL, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def _tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_official_hf_official_round_trip_is_lossless(tmp_path):
    assert cli_main(["convert", str(FIXTURE_MODEL), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert cli_main(["convert", str(tmp_path / "hf"), str(tmp_path / "back"), "--to", "official"]) == 0
    original, back = _tensors(FIXTURE_MODEL), _tensors(tmp_path / "back")
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    hf_keys = _tensors(tmp_path / "hf").keys()
    assert any(k.startswith("model.language_model.") for k in hf_keys)
    assert any(k.startswith("model.vision_model.") for k in hf_keys)
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    reference = json.loads((FIXTURE_MODEL / "config.json").read_text())
    for key in ("model_type", "hidden_size", "vision_encoder_config", "image_token_index", "mm_projector_type"):
        assert config[key] == reference[key]


@pytest.mark.parametrize("name", ["image_single", "video_static_pruned", "image_and_video"])
def test_hf_layout_loads_in_transformers_native_class(tmp_path, fixture_model, name):
    from transformers import VideoLlama3ForConditionalGeneration

    convert_checkpoint(FIXTURE_MODEL, tmp_path / "hf", to="hf", video_token_id=VIDEO_TOKEN)
    native = VideoLlama3ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    case, inputs, outputs = load_case(name)
    image_token = fixture_model.config.image_token_index
    # transformers' processor emits image and video placeholders separately and drops pruned ones.
    ids = inputs["input_ids"][0].clone()
    grids, merges = inputs["grid_sizes"], inputs["merge_sizes"]
    is_video = grids[:, 0] > 1
    counts = (grids[:, 0] * (grids[:, 1] // merges) * (grids[:, 2] // merges)).tolist()
    item_of_token = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    mask = outputs["compression_mask"]
    placeholder = ids == image_token
    ids[placeholder] = torch.where(is_video[item_of_token], VIDEO_TOKEN, image_token)
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[placeholder] = mask | ~is_video[item_of_token]
    ids = ids[keep][None]
    patches = torch.repeat_interleave(torch.arange(len(counts)), grids.prod(-1))
    kwargs = {}
    if (~is_video).any():
        kwargs.update(
            pixel_values=inputs["pixel_values"][~is_video[patches]],
            image_grid_thw=grids[~is_video],
            image_merge_sizes=merges[~is_video],
        )
    if is_video.any():
        kwargs.update(
            pixel_values_videos=inputs["pixel_values"][is_video[patches]],
            video_grid_thw=grids[is_video],
            video_merge_sizes=merges[is_video],
            video_compression_mask=mask[is_video[item_of_token]],
        )
    with torch.no_grad():
        theirs = native(input_ids=ids, **kwargs).logits[0]
        ours = VideoLLaMA3ForCausalLM.from_pretrained(tmp_path / "hf")(**inputs).logits[0]
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, outputs["logits"], atol=1e-4, rtol=0)


def test_save_pretrained_writes_official_layout_even_after_hf_load(tmp_path):
    convert_checkpoint(FIXTURE_MODEL, tmp_path / "hf", to="hf")
    VideoLLaMA3ForCausalLM.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "videollama3_qwen2"
    assert config["vision_encoder_config"]["hidden_size"] == 64
    keys = _tensors(tmp_path / "saved").keys()
    assert keys == _tensors(FIXTURE_MODEL).keys()


def test_sharded_checkpoint_loads_and_missing_shard_is_named(tmp_path, fixture_model):
    fixture_model.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    shards = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    _, inputs, outputs = load_case("video_fps1")
    with torch.no_grad():
        logits = VideoLLaMA3ForCausalLM.from_pretrained(tmp_path / "sharded")(**inputs).logits[0]
    torch.testing.assert_close(logits, outputs["logits"], atol=1e-4, rtol=0)
    shards[1].unlink()
    with pytest.raises(CheckpointError, match=shards[1].name):
        VideoLLaMA3ForCausalLM.from_pretrained(tmp_path / "sharded")


def test_wrong_shape_is_named(model_dir):
    tensors = load_file(model_dir / "model.safetensors")
    tensors["model.mm_projector.readout.0.weight"] = torch.zeros(64, 32)
    save_file(tensors, model_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.mm_projector\.readout\.0\.weight.*\[64, 32\]"):
        VideoLLaMA3ForCausalLM.from_pretrained(model_dir)


def test_missing_weight_is_named(model_dir):
    tensors = load_file(model_dir / "model.safetensors")
    del tensors["model.vision_encoder.post_layernorm.weight"]
    save_file(tensors, model_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="post_layernorm.weight"):
        VideoLLaMA3ForCausalLM.from_pretrained(model_dir)


def test_unknown_model_type(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "llava"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'llava' is not a VideoLLaMA3 checkpoint"):
        VideoLLaMA3ForCausalLM.from_pretrained(model_dir)


def test_truncated_safetensors(model_dir):
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        VideoLLaMA3ForCausalLM.from_pretrained(model_dir)


def test_missing_config_and_missing_folder(tmp_path, model_dir):
    (model_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        VideoLLaMA3ForCausalLM.from_pretrained(model_dir)
    with pytest.raises(CheckpointError, match="no such folder"):
        VideoLLaMA3ForCausalLM.from_pretrained(str(tmp_path / "nowhere"))


def test_tied_head_checkpoint_without_lm_head(tmp_path):
    config = VideoLLaMA3Config(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        image_token_index=100,
        vision_encoder_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "patch_size": 14,
        },
    )
    torch.manual_seed(0)
    model = VideoLLaMA3ForCausalLM(config)
    model.save_pretrained(tmp_path / "tied")
    with safe_open(tmp_path / "tied" / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys()
    loaded = VideoLLaMA3ForCausalLM.from_pretrained(tmp_path / "tied")
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_auto_classes_and_dtype():
    from transformers import AutoConfig, AutoModelForCausalLM

    assert isinstance(AutoConfig.from_pretrained(FIXTURE_MODEL), VideoLLaMA3Config)
    model = AutoModelForCausalLM.from_pretrained(FIXTURE_MODEL, dtype=torch.bfloat16)
    assert isinstance(model, VideoLLaMA3ForCausalLM)
    assert model.dtype == torch.bfloat16
    assert VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL, torch_dtype=torch.bfloat16).dtype == torch.bfloat16


def test_hub_name_resolves_through_the_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--DAMO-NLP-SG--VideoLLaMA3-Tiny" / "snapshots" / "abc123"
    shutil.copytree(FIXTURE_MODEL, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = VideoLLaMA3ForCausalLM.from_pretrained("DAMO-NLP-SG/VideoLLaMA3-Tiny", cache_dir=tmp_path / "hub")
    assert model.config.hidden_size == 64
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        VideoLLaMA3ForCausalLM.from_pretrained("DAMO-NLP-SG/VideoLLaMA3-Missing", cache_dir=tmp_path / "hub")


def test_convert_refuses_non_empty_destination(tmp_path):
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "x").write_text("keep me")
    assert cli_main(["convert", str(FIXTURE_MODEL), str(tmp_path / "dst"), "--to", "hf"]) == 2
    assert (tmp_path / "dst" / "x").read_text() == "keep me"


def test_loading_does_not_need_twice_the_model_in_memory(tmp_path):
    """Weights are materialised from the checkpoint, not after a full random init (as transformers does)."""
    import subprocess
    import sys

    config = VideoLLaMA3Config(
        vocab_size=8000, hidden_size=512, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=2, image_token_index=100,
        vision_encoder_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "patch_size": 14},
    )  # fmt: skip
    model = VideoLLaMA3ForCausalLM(config)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(tmp_path / "m")
    del model
    script = (
        "import resource, videollama3\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"m = videollama3.VideoLLaMA3ForCausalLM.from_pretrained({str(tmp_path / 'm')!r})\n"
        "s = sum(float(p.sum()) for p in m.parameters())  # touch every weight\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    increase = int(out.stdout.strip().splitlines()[-1])
    assert increase < 1.5 * size, f"loading a {size / 1e6:.0f} MB model raised peak RSS by {increase / 1e6:.0f} MB"


def test_resolver_names_the_input_and_the_reason(tmp_path, monkeypatch):
    from videollama3.hub import resolve_folder

    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(CheckpointError, match="weights.bin: expected a checkpoint folder, found a file"):
        resolve_folder(tmp_path / "weights.bin")
    with pytest.raises(CheckpointError, match="no such folder, and not a Hugging Face Hub model id"):
        resolve_folder("owner/name/extra")
    with pytest.raises(CheckpointError, match="no such folder, and not a Hugging Face Hub model id"):
        resolve_folder("owner/bad--name")  # the shape of a repo id, but huggingface_hub refuses it
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="DAMO-NLP-SG/absent: .*local_files_only=True"):
        resolve_folder("DAMO-NLP-SG/absent", cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(CheckpointError, match="no subfolder 'nested'"):
        resolve_folder(FIXTURE_MODEL, subfolder="nested")
    assert resolve_folder(str(FIXTURE_MODEL)) == FIXTURE_MODEL


def test_checkpoint_never_imports_modeling():
    """configuration <- checkpoint <- modeling: the model passes itself to the checkpoint checks."""
    import ast
    from pathlib import Path

    import videollama3.hub
    import videollama3.model.layouts

    for module in (videollama3.model.layouts, videollama3.hub):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name.split(".")[-1] == "modeling"], module.__name__
