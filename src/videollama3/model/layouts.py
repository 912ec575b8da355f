"""Checkpoint layouts: the official release layout and transformers' native ``video_llama_3`` layout.

Official (``model_type: videollama3_qwen2``): Qwen2 fields flat in ``config.json`` plus
``vision_encoder_config``; weights ``model.{embed_tokens,layers,norm}``, ``lm_head``,
``model.vision_encoder.*``, ``model.mm_projector.*``.

transformers (``model_type: video_llama_3``): ``text_config`` / ``vision_config`` nested; weights
``model.language_model.*``, ``model.vision_model.*``, ``model.projector.*``, ``lm_head``; placeholder ids
``image_token_id`` / ``video_token_id``. vLLM's transformers backend, lmms-eval and VLMEvalKit read this one.

Before anything heavy is loaded, the folder is checked (config readable, model type known, every shard
present, safetensors headers intact and not truncated, names and shapes as the config implies) so that a
broken checkpoint fails with a ``CheckpointError`` naming the file and the problem. The expected names and
shapes are those of the model class the caller passes in (``VideoLLaMA3ForCausalLM.from_pretrained`` passes
itself): this module never imports ``modeling``. Names are resolved to folders by :mod:`videollama3.hub`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..hub import resolve_folder
from .configuration import MODEL_TYPE, VISION_FIELDS, VideoLLaMA3Config

HF_MODEL_TYPE = "video_llama_3"
HF_VISION_MODEL_TYPE = "video_llama_3_vision"
SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"

# checkpoint key (transformers layout) -> our key (official layout)
HF_TO_OFFICIAL = {
    r"^model\.vision_model\.": "model.vision_encoder.",
    r"^model\.projector\.": "model.mm_projector.",
    r"^model\.language_model\.": "model.",
}
OFFICIAL_TO_HF = [
    ("model.vision_encoder.", "model.vision_model."),
    ("model.mm_projector.", "model.projector."),
    ("model.", "model.language_model."),
]
# The official config carries Qwen2's fields flat; these top-level keys are VideoLLaMA3's own.
OFFICIAL_EXTRA_KEYS = (
    "vision_encoder",
    "vision_encoder_config",
    "mm_projector_type",
    "use_token_compression",
    "image_token_index",
    "compression_threshold",
    "compression_min_tokens",
)
# PretrainedConfig's generic fields, noise in a converted config.
GENERIC_CONFIG_KEYS = (
    "_name_or_path",
    "id2label",
    "label2id",
    "chunk_size_feed_forward",
    "output_attentions",
    "output_hidden_states",
    "problem_type",
    "return_dict",
    "is_encoder_decoder",
)
NON_TEXT_KEYS = ("architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype")


# ---------------------------------------------------------------------------- configs
def read_config_dict(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (every checkpoint folder needs a config.json)")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def official_config_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """transformers ``video_llama_3`` config dict -> official flat config dict."""
    text = dict(hf.get("text_config") or {})
    vision = dict(hf.get("vision_config") or {})
    out = {k: v for k, v in text.items() if k not in NON_TEXT_KEYS}
    out["model_type"] = MODEL_TYPE
    out["architectures"] = ["Videollama3Qwen2ForCausalLM"]
    if "tie_word_embeddings" in hf:
        out["tie_word_embeddings"] = hf["tie_word_embeddings"] or text.get("tie_word_embeddings", False)
    out["vision_encoder_config"] = {k: v for k, v in vision.items() if k in VISION_FIELDS}
    rope = vision.get("rope_parameters") or {}
    if "rope_theta" in rope:
        out["vision_encoder_config"]["rope_theta"] = rope["rope_theta"]
    out["vision_encoder"] = None
    out["mm_projector_type"] = "mlp2x_gelu"
    out["use_token_compression"] = True
    out["image_token_index"] = hf.get("image_token_id", 151655)
    for key in ("dtype", "torch_dtype"):
        if key in hf:
            out["torch_dtype"] = hf[key]
    return out


def hf_config_from_official(config: VideoLLaMA3Config, video_token_id: int | None = None) -> dict[str, Any]:
    """Our config -> transformers ``video_llama_3`` config dict."""
    flat = config.to_dict()
    text = {k: v for k, v in flat.items() if k not in OFFICIAL_EXTRA_KEYS and k not in NON_TEXT_KEYS}
    text["model_type"] = "qwen2"
    vision = config.vision_config.to_dict()
    vision = {k: v for k, v in vision.items() if k in VISION_FIELDS}
    theta = vision.pop("rope_theta", 10000.0)
    vision["rope_parameters"] = {"rope_type": "axial", "rope_theta": theta}
    vision["model_type"] = HF_VISION_MODEL_TYPE
    text = {k: v for k, v in text.items() if k not in GENERIC_CONFIG_KEYS}
    return {
        "architectures": ["VideoLlama3ForConditionalGeneration"],
        "model_type": HF_MODEL_TYPE,
        "text_config": text,
        "vision_config": vision,
        "image_token_id": config.image_token_index,
        "video_token_id": config.image_token_index if video_token_id is None else video_token_id,
        "tie_word_embeddings": config.tie_word_embeddings,
        "dtype": flat.get("dtype") or flat.get("torch_dtype") or "float32",
    }


def load_config(folder: Path) -> tuple[VideoLLaMA3Config, str]:
    """(config, layout) where layout is ``"official"`` or ``"hf"``."""
    raw = read_config_dict(folder)
    model_type = raw.get("model_type")
    if model_type == HF_MODEL_TYPE:
        raw, layout = official_config_from_hf(raw), "hf"
    elif model_type == MODEL_TYPE:
        layout = "official"
    else:
        raise CheckpointError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not a VideoLLaMA3 checkpoint "
            f"(expected {MODEL_TYPE!r} or {HF_MODEL_TYPE!r})"
        )
    raw = {k: v for k, v in raw.items() if k not in ("transformers_version",)}
    try:
        return VideoLLaMA3Config(**raw), layout
    except Exception as exc:
        raise CheckpointError(f"{folder / 'config.json'}: invalid configuration ({exc})") from None


# ---------------------------------------------------------------------------- weights
def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint (from the index when sharded), each checked to exist."""
    index = folder / SAFE_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: unreadable shard index ({exc})") from None
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index}: shard(s) listed in the index are missing: {', '.join(missing)}")
        return files
    single = folder / SAFE_SINGLE
    if single.is_file():
        return [single]
    if list(folder.glob("*.bin")) or list(folder.glob("*.pt")):
        raise CheckpointError(f"{folder}: only pickle weights (.bin/.pt) found; convert them to safetensors first")
    raise CheckpointError(f"{folder}: no {SAFE_SINGLE} or {SAFE_INDEX} found")


def read_weights(folder: Path) -> dict:
    """All tensors of a checkpoint folder (single file or shards), by name."""
    from safetensors.torch import load_file

    weights = {}
    for file in weight_files(folder):
        weights.update(load_file(str(file)))
    return weights


def read_safetensors_header(file: Path) -> dict[str, dict]:
    """Tensor name -> {dtype, shape, data_offsets}, checking the file is complete."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file}: truncated ({size} bytes, not even a safetensors header)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise CheckpointError(f"{file}: truncated or not safetensors (header claims {header_len} bytes)")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{file}: corrupt safetensors header") from None
    header.pop("__metadata__", None)
    data_end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{file}: truncated: the header describes {8 + header_len + data_end} bytes but the file has {size}"
        )
    return header


def checkpoint_shapes(folder: Path, layout: str) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Our (official) parameter name -> (shape, file) for every tensor of the checkpoint."""
    shapes = {}
    for file in weight_files(folder):
        for name, meta in read_safetensors_header(file).items():
            shapes[to_official_key(name) if layout == "hf" else name] = (tuple(meta["shape"]), file)
    return shapes


def to_official_key(name: str) -> str:
    for pattern, repl in HF_TO_OFFICIAL.items():
        if re.match(pattern, name):
            return re.sub(pattern, repl, name, count=1)
    return name


def to_hf_key(name: str) -> str:
    for prefix, repl in OFFICIAL_TO_HF:
        if name.startswith(prefix):
            return repl + name[len(prefix) :]
    return name


def expected_shapes(config: VideoLLaMA3Config, model_class: type[torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes the config implies: the state dict of ``model_class(config)`` built on the meta device
    (no memory). The model class is passed in (``VideoLLaMA3ForCausalLM`` passes itself), so that this module
    never imports ``modeling``: configuration <- layouts <- modeling."""
    with torch.device("meta"):
        model = model_class(config)
    return {name: tuple(p.shape) for name, p in model.state_dict().items()}


def validate_checkpoint(
    folder: Path, config: VideoLLaMA3Config, layout: str, model_class: type[torch.nn.Module]
) -> None:
    """Check that the checkpoint has every parameter of ``model_class(config)``, with its shape."""
    found = checkpoint_shapes(folder, layout)
    expected = expected_shapes(config, model_class)
    optional = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in expected if k not in found and k not in optional]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{folder}: {len(missing)} weight(s) missing from the checkpoint: {shown}")
    for name, (shape, file) in found.items():
        if name in expected and expected[name] != shape:
            raise CheckpointError(
                f"{file}: tensor {name} has shape {list(shape)} but config.json implies {list(expected[name])}"
            )


def prepare_from_pretrained(
    name_or_path, kwargs: dict, model_class: type[torch.nn.Module]
) -> tuple[str, VideoLLaMA3Config, dict]:
    """Resolve, read and check a checkpoint for ``model_class.from_pretrained``: (folder, config, extra kwargs)."""
    folder = resolve_folder(
        name_or_path,
        cache_dir=kwargs.get("cache_dir"),
        revision=kwargs.get("revision"),
        token=kwargs.get("token"),
        local_files_only=kwargs.get("local_files_only", False),
    )
    config, layout = load_config(folder)
    given = kwargs.pop("config", None)
    if isinstance(given, VideoLLaMA3Config):  # e.g. from AutoModelForCausalLM: it already applied the overrides
        config = given
    elif given is not None:
        raise CheckpointError(f"config must be a VideoLLaMA3Config, got {type(given).__name__}")
    else:  # config fields given as keyword arguments override config.json, as in transformers
        for key in list(kwargs):
            if key in config.__dataclass_fields__ or key in OFFICIAL_EXTRA_KEYS:
                setattr(config, key, kwargs.pop(key))
    validate_checkpoint(folder, config, layout, model_class)
    # transformers would otherwise look for the remote code that `auto_map` names; this class is the code.
    kwargs.pop("trust_remote_code", None)
    extra: dict[str, Any] = {"config": config}
    if layout == "hf":
        extra["key_mapping"] = dict(HF_TO_OFFICIAL)
    if "torch_dtype" in kwargs and "dtype" not in kwargs:
        extra["dtype"] = kwargs.pop("torch_dtype")
    return str(folder), config, extra


# ---------------------------------------------------------------------------- conversion
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
)


def convert_checkpoint(
    src,
    dst,
    to: str = "hf",
    max_shard_size: str = "5GB",
    video_token_id: int | None = None,
    model_class: type[torch.nn.Module] | None = None,
) -> Path:
    """Rewrite a checkpoint in the other layout (tensors are renamed, never modified).

    With ``model_class`` (the CLI passes ``VideoLLaMA3ForCausalLM``), the source is first checked to hold
    every parameter of that model with its shape; without it, only its config and files are checked.
    """
    from safetensors import safe_open

    if to not in ("hf", "official"):
        raise CheckpointError(f"unknown target layout {to!r}: use 'hf' or 'official'")
    src = resolve_folder(src)
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst}: destination exists and is not empty")
    config, layout = load_config(src)
    if model_class is None:
        checkpoint_shapes(src, layout)  # every shard present, headers intact
    else:
        validate_checkpoint(src, config, layout, model_class)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    if to == "hf":
        tokenizer_ids = _special_token_ids(src)
        if video_token_id is None:
            video_token_id = tokenizer_ids.get("<|video_pad|>")
        config_dict = hf_config_from_official(config, video_token_id)
    else:
        config_dict = config.to_dict()
        config_dict.setdefault("rope_theta", (config.rope_parameters or {}).get("rope_theta"))
    (tmp / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")

    weights = ShardedWeights(_parse_size(max_shard_size))
    for file in weight_files(src):
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                ours = to_official_key(name) if layout == "hf" else name
                weights.add(to_hf_key(ours) if to == "hf" else ours, f.get_tensor(name))
    weights.write(tmp)
    for name in PROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    if dst.exists():
        dst.rmdir()
    os.replace(tmp, dst)
    return dst


class ShardedWeights:
    """Tensors gathered into safetensors shards of at most ``limit`` bytes each, in the order added, and
    written as one checkpoint (``model.safetensors``, or numbered shards with their index)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.shards: list[dict[str, torch.Tensor]] = [{}]
        self._bytes = 0  # in the last shard

    def add(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self._bytes and self._bytes + nbytes > self.limit:
            self.shards.append({})
            self._bytes = 0
        self.shards[-1][name] = tensor
        self._bytes += nbytes

    def write(self, folder: Path) -> None:
        from safetensors.torch import save_file

        metadata = {"format": "pt"}
        if len(self.shards) == 1:
            save_file(self.shards[0], str(folder / SAFE_SINGLE), metadata=metadata)
            return
        weight_map, total = {}, 0
        for i, shard in enumerate(self.shards, 1):
            name = f"model-{i:05d}-of-{len(self.shards):05d}.safetensors"
            save_file(shard, str(folder / name), metadata=metadata)
            for key, tensor in shard.items():
                weight_map[key] = name
                total += tensor.numel() * tensor.element_size()
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def _special_token_ids(folder: Path) -> dict[str, int]:
    file = folder / "tokenizer.json"
    if not file.is_file():
        return {}
    try:
        return {t["content"]: t["id"] for t in json.loads(file.read_text()).get("added_tokens", [])}
    except (json.JSONDecodeError, KeyError, TypeError):
        return {}


def _parse_size(size: str | int) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
    if not match:
        raise CheckpointError(f"max_shard_size {size!r}: use e.g. '5GB' or '500MB'")
    return int(float(match[1]) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[match[2]])
