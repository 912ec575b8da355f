"""Assemble a new VideoLLaMA3 checkpoint from a Qwen2 LLM and a vision encoder (the start of stage 1).

The LLM folder (``Qwen/Qwen2.5-1.5B-Instruct``, ``Qwen/Qwen2.5-7B-Instruct``...) gives the decoder, the
embeddings, the LM head (if untied) and the tokenizer. The vision encoder may be

- SigLIP (``google/siglip-so400m-patch14-384``; ``SiglipModel`` or ``SiglipVisionModel``): ``vision_model.*``
  weights are mapped onto ours; its learned absolute position embedding (we use 2D RoPE instead, so that
  any resolution works) and its attention-pooling head are dropped, text tower weights ignored;
- ``DAMO-NLP-SG/VL3-SigLIP-NaViT`` (the encoder alone, already in our layout);
- a VideoLLaMA3 checkpoint, either layout (its tuned encoder: the 7B recipe starts from the 2B's).

The projector (``mlp2x_gelu``) is initialised like transformers initialises linear layers: normal(0,
``initializer_range``) weights, zero biases. The tokenizer gets VideoLLaMA3's added tokens (``<image>``,
``<|stream_start|>``, ``<|stream_end|>``; an LLM without spare embedding rows gets rows for them, the mean of
its embeddings) unless ``processor`` names a VideoLLaMA3 checkpoint whose
tokenizer and processor files are used as they are (recommended: they carry the official chat template).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..hub import resolve_folder, resolve_processor_folder
from ..model.configuration import (
    MODEL_TYPE,
    VISION_FIELDS,
    VISION_MODEL_TYPE,
    VideoLLaMA3Config,
    VideoLLaMA3VisionConfig,
)
from ..model.layouts import (
    HF_MODEL_TYPE,
    PROCESSOR_FILES,
    ShardedWeights,
    load_config,
    read_config_dict,
    validate_checkpoint,
    weight_files,
)
from .checkpointing import atomic_directory

ADDED_TOKENS = ("<image>", "<|stream_start|>", "<|stream_end|>")
# Prefixes under which vision-encoder weights are stored, in the checkpoints we accept.
VISION_PREFIXES = ("model.vision_encoder.", "model.vision_model.", "vision_model.", "")
VISION_KEEP = re.compile(r"^(embeddings\.patch_embedding|encoder\.layers\.\d+|post_layernorm)\.")
LLM_CONFIG_DROP = ("architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype")
SHARD_BYTES = 5_000_000_000
VOCAB_MULTIPLE = 64


def grow_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """(V, H) embedding or head weights with rows added up to ``rows``: each new row is the mean of the
    existing ones (new tokens start as an average token; the stages train them)."""
    missing = rows - weight.shape[0]
    if missing <= 0:
        return weight
    return torch.cat([weight, weight.float().mean(0, keepdim=True).to(weight.dtype).expand(missing, -1)])


def vision_config_fields(folder: Path) -> dict:
    """The vision encoder's config fields from a SigLIP, NaViT or VideoLLaMA3 ``config.json``."""
    raw = read_config_dict(folder)
    model_type = raw.get("model_type")
    if model_type in (MODEL_TYPE, HF_MODEL_TYPE):
        config, _ = load_config(folder)
        fields = config.vision_config.to_dict()
    elif model_type == "siglip":
        fields = raw.get("vision_config") or {}
    elif model_type in ("siglip_vision_model", VISION_MODEL_TYPE):
        fields = raw
    else:
        raise CheckpointError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not a vision encoder we can start from "
            "(SigLIP, VL3-SigLIP-NaViT or a VideoLLaMA3 checkpoint)"
        )
    return {k: v for k, v in fields.items() if k in VISION_FIELDS}


def vision_state_dict(folder: Path, config: VideoLLaMA3VisionConfig) -> dict[str, torch.Tensor]:
    """Vision weights renamed to ``VisionEncoder``'s names (no prefix), checked against ``config``."""
    from safetensors import safe_open

    from ..model.vision_encoder import VisionEncoder

    prefix = None
    out: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                if prefix is None:  # the first key that maps decides the layout of the whole checkpoint
                    prefix = next(
                        (p for p in VISION_PREFIXES if key.startswith(p) and VISION_KEEP.match(key[len(p) :])), None
                    )
                if prefix is None or not key.startswith(prefix):
                    continue
                name = key[len(prefix) :]
                if VISION_KEEP.match(name):  # drops position_embedding, the pooling head, the text tower
                    out[name] = f.get_tensor(key)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VisionEncoder(config).state_dict().items()}
    missing = sorted(set(expected) - set(out))
    if missing:
        raise CheckpointError(f"{folder}: vision encoder weights missing: {missing[:5]} ({len(missing)} in all)")
    for name, tensor in out.items():
        if name not in expected:
            raise CheckpointError(f"{folder}: unexpected vision weight {name}")
        if tuple(tensor.shape) != expected[name]:
            raise CheckpointError(f"{folder}: {name} has shape {list(tensor.shape)}, expected {list(expected[name])}")
    return out


def build_initial_checkpoint(
    llm: str | os.PathLike,
    vision_encoder: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    projector_type: str = "mlp2x_gelu",
    processor: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> Path:
    """Write a VideoLLaMA3 checkpoint (official layout, processor files included) to ``output_dir``.

    Args:
        llm: Qwen2 / Qwen2.5 causal LM folder or hub name.
        vision_encoder: SigLIP, VL3-SigLIP-NaViT or VideoLLaMA3 folder or hub name.
        projector_type: ``mlp2x_gelu`` (released) or ``linear``.
        processor: a VideoLLaMA3 folder / hub name whose tokenizer and processor files to use.
        dtype: dtype of the written weights.
        seed: seed of the projector's random initialisation.
    """
    from safetensors import safe_open

    from ..model.modeling import VideoLLaMA3ForCausalLM
    from ..model.projector import build_projector
    from ..processing import VideoLLaMA3ImageProcessor, VideoLLaMA3Processor

    llm_dir = resolve_folder(llm)
    vision_dir = resolve_folder(vision_encoder)
    llm_config = read_config_dict(llm_dir)
    if llm_config.get("model_type") != "qwen2":
        raise CheckpointError(
            f"{llm_dir / 'config.json'}: expected a Qwen2 LLM (model_type qwen2), got {llm_config.get('model_type')!r}"
        )
    vision_config = VideoLLaMA3VisionConfig(**vision_config_fields(vision_dir))

    with atomic_directory(output_dir) as tmp:
        # Tokenizer and processor files first: the <image> id goes into the model config.
        if processor is not None:
            processor_dir = resolve_processor_folder(processor)  # tokenizer and configs only, no weights
            for name in PROCESSOR_FILES:
                if name != "generation_config.json" and (processor_dir / name).is_file():
                    shutil.copy2(processor_dir / name, tmp / name)
            tokenizer = VideoLLaMA3Processor.from_pretrained(tmp).tokenizer
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(llm_dir)
            tokenizer.add_tokens(list(ADDED_TOKENS), special_tokens=True)
            image_processor = VideoLLaMA3ImageProcessor(patch_size=vision_config.patch_size)
            VideoLLaMA3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
        if (llm_dir / "generation_config.json").is_file():
            shutil.copy2(llm_dir / "generation_config.json", tmp / "generation_config.json")

        fields = {k: v for k, v in llm_config.items() if k not in LLM_CONFIG_DROP}
        if len(tokenizer) > fields["vocab_size"]:
            # An LLM without spare embedding rows (SmolLM2, unlike Qwen2.5) grows to a multiple of 64 rows.
            fields["vocab_size"] = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        image_token_index = tokenizer.convert_tokens_to_ids("<image>")
        config = VideoLLaMA3Config(
            **fields,
            vision_encoder_config=vision_config.non_default_dict(),
            mm_projector_type=projector_type,
            use_token_compression=True,
            image_token_index=image_token_index,
        )
        config.architectures = ["Videollama3Qwen2ForCausalLM"]
        config.dtype = dtype
        config_dict = config.to_dict()
        (tmp / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")

        weights = ShardedWeights(SHARD_BYTES)

        def add(name: str, tensor: torch.Tensor) -> None:
            weights.add(name, tensor.to(dtype).contiguous())

        for file in weight_files(llm_dir):
            with safe_open(file, framework="pt") as f:
                for key in f.keys():
                    if key in ("model.embed_tokens.weight", "lm_head.weight"):
                        add(key, grow_rows(f.get_tensor(key), config.vocab_size))
                    elif key.startswith(("model.", "lm_head.")):
                        add(key, f.get_tensor(key))
        for name, tensor in vision_state_dict(vision_dir, vision_config).items():
            add(f"model.vision_encoder.{name}", tensor)
        generator = torch.Generator().manual_seed(seed)
        projector = build_projector(projector_type, vision_config.hidden_size, config.hidden_size)
        for name, param in projector.state_dict().items():
            if name.endswith("bias"):
                value = torch.zeros_like(param)
            else:
                value = torch.randn(param.shape, generator=generator) * config.initializer_range
            add(f"model.mm_projector.{name}", value)
        weights.write(tmp)
        validate_checkpoint(tmp, config, "official", VideoLLaMA3ForCausalLM)
    return Path(output_dir)
