"""Per-module learning rates, freezing, optimizer parameter groups and the learning-rate schedule.

Every parameter belongs to one of three groups by name: ``vision_encoder`` (``model.vision_encoder.*``),
``projector`` (``model.mm_projector.*``) and ``llm`` (everything else: decoder layers, embeddings, final
norm and the LM head, tied or not). A group whose learning rate is ``None`` is frozen
(``requires_grad=False``), so a frozen LLM also freezes an untied ``lm_head``.

Weight decay is never applied to biases and normalisation weights (every parameter with fewer than two
dimensions). ``optimizer: muon`` steps the hidden matrices with Muon and the rest with AdamW (see
``muon.py``). The schedule is linear warm-up over ``ceil(warmup_ratio * steps)`` steps, then cosine (or
linear, or constant) decay to ``min_lr_ratio`` of the peak, as transformers' ``cosine`` scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .muon import MuonAdamW, is_muon_parameter
from .recipe import LearningRates, OptimConfig

PEFT_PREFIX = "base_model.model."


def module_group(name: str) -> str:
    """``"llm"``, ``"projector"`` or ``"vision_encoder"`` for a parameter name of the model."""
    name = name.removeprefix(PEFT_PREFIX)
    if name.startswith("model.vision_encoder."):
        return "vision_encoder"
    if name.startswith("model.mm_projector."):
        return "projector"
    return "llm"


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def apply_trainability(model: nn.Module, lrs: LearningRates, lora_groups: Iterable[str] = ()) -> dict[str, int]:
    """Set ``requires_grad`` from the learning rates; return trainable parameter counts per group.

    Args:
        lora_groups: groups that carry LoRA adapters: only their adapter weights train.
    """
    rates = lrs.as_dict()
    lora_groups = set(lora_groups)
    counts = dict.fromkeys(rates, 0)
    for name, param in model.named_parameters():
        group = module_group(name)
        if rates[group] is None or ".original_module." in name:  # PEFT keeps the untouched original there
            trainable = False
        elif group in lora_groups:
            trainable = is_lora_parameter(name)
        else:  # the whole group trains (under PEFT: its modules_to_save copy)
            trainable = True
        param.requires_grad_(trainable)
        if trainable:
            counts[group] += param.numel()
    return counts


def parameter_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Groups: (module group) x (decay, no decay) [x (Muon, AdamW)], trainable parameters only."""
    rates = config.lr.as_dict()
    buckets: dict[tuple[str, bool, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:  # tied weights appear once
            continue
        seen.add(id(param))
        decay = param.ndim >= 2 and config.weight_decay > 0
        muon = config.optimizer == "muon" and is_muon_parameter(name, param)
        buckets.setdefault((module_group(name), decay, muon), []).append(param)
    groups = []
    for (group, decay, muon), params in sorted(buckets.items()):
        entry = {
            "params": params,
            "lr": rates[group],
            "initial_lr": rates[group],
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{group}{'' if decay else '/no_decay'}{'/muon' if muon else ''}",
            "module_group": group,
        }
        if config.optimizer == "muon":
            entry["muon"] = muon
        groups.append(entry)
    return groups


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config)
    if not groups:
        raise ValueError("nothing to train: every module group is frozen (all learning rates are null)")
    if config.optimizer == "muon":
        return MuonAdamW(groups, betas=tuple(config.betas), eps=config.eps, momentum=config.muon_momentum)
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, betas=tuple(config.betas), eps=config.eps, fused=fused or None)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int):
    warmup = math.ceil(config.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, config.schedule, config.min_lr_ratio)
    )


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Learning rate per module group (decay and no-decay groups share it)."""
    return {g["module_group"]: g["lr"] for g in optimizer.param_groups}
