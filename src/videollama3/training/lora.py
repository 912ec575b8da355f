"""LoRA / QLoRA fine-tuning with PEFT, and merging adapters back into a normal checkpoint.

Adapters go on the linear layers named in ``lora.targets`` inside the LLM's decoder layers, and optionally
(``lora.vision_encoder``) on the vision encoder's attention and MLP. Module groups with a learning rate
and no adapters (typically the projector) train fully. A LoRA stage's output folder holds:

- ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT), whose ``base_model_name_or_path`` is
  the checkpoint the stage started from;
- ``non_lora_trainables.safetensors``: full weights of the groups trained without adapters;
- ``videollama3_settings.json``: the model config's settings the stage trained with (:data:`STAGE_SETTINGS`,
  e.g. ``use_token_compression``: whether video tokens were pruned), which the merged checkpoint's config
  must say although the base's may not;
- the processor files (tokenizer, ``preprocessor_config.json``, ``processor_config.json``).

``videollama3 export-lora ADAPTER_DIR OUT_DIR`` (:func:`export_merged`) loads the base, applies both, merges
the adapters (``merge_and_unload``) and saves a normal checkpoint in the official layout.

QLoRA (``lora.quantize: 4bit``) loads the base LLM weights with bitsandbytes (CUDA only); the vision
encoder, projector and LM head stay in bf16.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .recipe import LoraSettings

NON_LORA_FILE = "non_lora_trainables.safetensors"
SETTINGS_FILE = "videollama3_settings.json"
# Config fields a stage sets on the model it trains (not the base's): the merged checkpoint must carry them.
STAGE_SETTINGS = ("use_token_compression",)
ADAPTER_CONFIG = "adapter_config.json"


def target_regex(settings: LoraSettings) -> str:
    """Full-match regex over module names selecting the layers that get adapters."""
    llm = "|".join(settings.targets)
    pattern = rf"model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{llm})"
    if settings.vision_encoder:
        vision = "|".join(settings.vision_targets)
        pattern += rf"|model\.vision_encoder\.encoder\.layers\.\d+\.(?:self_attn|mlp)\.(?:{vision})"
    return rf"^(?:{pattern})$"


def lora_groups(settings: LoraSettings) -> tuple[str, ...]:
    """Module groups whose training is done by adapters only."""
    return ("llm", "vision_encoder") if settings.vision_encoder else ("llm",)


def quantization_kwargs(settings: LoraSettings) -> dict:
    """``from_pretrained`` keyword arguments for QLoRA (empty without quantization)."""
    if settings.quantize is None:
        return {}
    if not torch.cuda.is_available():
        raise ConfigError("lora.quantize needs a CUDA GPU (bitsandbytes); use plain LoRA on this machine")
    try:
        from transformers import BitsAndBytesConfig
    except ImportError as exc:  # pragma: no cover - transformers always has it
        raise ConfigError(f"QLoRA needs bitsandbytes: {exc}") from exc
    four = settings.quantize == "4bit"
    config = BitsAndBytesConfig(
        load_in_4bit=four,
        load_in_8bit=not four,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["vision_encoder", "mm_projector", "lm_head"],
    )
    return {"quantization_config": config, "dtype": torch.bfloat16}


def apply_lora(model: nn.Module, settings: LoraSettings, gradient_checkpointing: bool) -> nn.Module:
    """Wrap ``model`` in a PEFT model with LoRA adapters (trainability is set afterwards, per group)."""
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError as exc:
        raise ConfigError("LoRA needs PEFT: pip install 'videollama3[train]'") from exc
    if settings.quantize is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_regex(settings),
        bias="none",
    )
    with _peft_deprecations_silenced():
        return get_peft_model(model, config)


@contextlib.contextmanager
def _peft_deprecations_silenced():
    """PEFT reads transformers' ``is_gradient_checkpointing``, deprecated in 5.24: not the user's to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)
        yield


def save_adapter(peft_model: nn.Module, state_dict: dict[str, torch.Tensor], folder: Path, base: str) -> None:
    """Write the adapters and the fully trained non-LoRA weights of ``peft_model`` to ``folder``.

    Args:
        state_dict: the PEFT model's full state dict (gathered from FSDP shards when sharded).
        base: the checkpoint the adapters apply to (recorded in ``adapter_config.json``).
    """
    from safetensors.torch import save_file

    from .optim import PEFT_PREFIX, is_lora_parameter

    peft_model.save_pretrained(str(folder), state_dict=state_dict)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad and not is_lora_parameter(name)}
    non_lora = {
        name.removeprefix(PEFT_PREFIX): tensor.contiguous() for name, tensor in state_dict.items() if name in trainable
    }
    if non_lora:
        save_file(non_lora, str(folder / NON_LORA_FILE), metadata={"format": "pt"})
    settings = {name: getattr(peft_model.config, name) for name in STAGE_SETTINGS}
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    config_file = folder / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(base)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_merged(
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    base: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Merge a LoRA stage output into a normal checkpoint (official layout, with the processor files).

    Args:
        adapter_dir: a folder written by a LoRA stage (or any PEFT adapter folder of a VideoLLaMA3 model).
        output_dir: where to write the merged checkpoint (must not exist or be empty).
        base: the base checkpoint (default: ``base_model_name_or_path`` of the adapter config).
        dtype: dtype of the saved weights.
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    from ..model.layouts import PROCESSOR_FILES
    from ..model.modeling import VideoLLaMA3ForCausalLM
    from .checkpointing import atomic_directory

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    config_file = adapter_dir / ADAPTER_CONFIG
    if not config_file.is_file():
        raise CheckpointError(f"{adapter_dir}: no {ADAPTER_CONFIG} (not a LoRA adapter folder)")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise CheckpointError(f"{output_dir}: destination exists and is not empty")
    base = base or json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise CheckpointError(f"{config_file}: no base_model_name_or_path; pass the base checkpoint explicitly")

    model = VideoLLaMA3ForCausalLM.from_pretrained(base, dtype=torch.float32)
    non_lora = adapter_dir / NON_LORA_FILE
    if non_lora.is_file():
        weights = load_file(str(non_lora))
        result = model.load_state_dict(weights, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"{non_lora}: weights the model does not have: {result.unexpected_keys[:5]}")
    with _peft_deprecations_silenced():
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    settings_file = adapter_dir / SETTINGS_FILE
    if settings_file.is_file():  # what the stage trained with, e.g. pruned video tokens
        settings = json.loads(settings_file.read_text())
        for name in STAGE_SETTINGS:
            if name in settings:
                setattr(merged.config, name, settings[name])
    merged.to(dtype)
    with atomic_directory(output_dir) as tmp:
        merged.save_pretrained(tmp)
        for name in PROCESSOR_FILES:
            source = adapter_dir / name if (adapter_dir / name).is_file() else Path(base) / name
            if source.is_file() and not (tmp / name).exists():
                shutil.copy2(source, tmp / name)
    return output_dir
