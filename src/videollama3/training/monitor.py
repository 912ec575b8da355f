"""Throughput, model FLOPs utilisation (MFU) and metric logging (TensorBoard, W&B, a JSONL file).

MFU counts the FLOPs the model needs (matmuls and attention, forward + backward, activation recomputation
excluded) against the peak bf16 dense throughput of the devices. Per training token::

    LLM:     2 * N_llm (decoder matmuls)  + 2 * layers * hidden * L_sample   (causal attention, QK^T and AV)
    head:    2 * hidden * vocab           (only supervised positions: logits are computed only there)
    vision:  2 * N_vis per patch + 4 * layers_vis * hidden_vis * frame_patches (full attention per frame)
    projector: 2 * N_proj per merged visual token

times 3 for a module that trains (forward, input gradients, weight gradients), 2 for a frozen module that
gradients still flow through (a frozen LLM in stage 1), 1 for a frozen module with nothing trainable before
it (a frozen vision encoder).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .optim import module_group

# Dense bf16 peak TFLOP/s per device (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "H800": 989.0,
    "H20": 148.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """Peak FLOP/s of one device, or ``None`` when unknown (MFU is then not shown)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


@dataclass
class FlopsModel:
    """The model dimensions the FLOPs estimate needs, and which groups train."""

    llm_matmul_params: int
    llm_layers: int
    hidden: int
    vocab: int
    vision_matmul_params: int
    vision_layers: int
    vision_hidden: int
    projector_params: int
    trains: dict[str, bool]

    @classmethod
    def from_model(cls, model: nn.Module, base: nn.Module) -> FlopsModel:
        """Count matmul weights per group of ``base`` (``VideoLLaMA3ForCausalLM``); ``model`` tells what trains."""
        config = base.config
        counts = {"llm": 0, "vision_encoder": 0, "projector": 0}
        for name, p in base.named_parameters():
            if p.ndim < 2 or "embed_tokens" in name or name.startswith("lm_head") or ".lora_" in name:
                continue
            counts[module_group(name)] += p.numel()
        trains = dict.fromkeys(counts, False)
        for name, p in model.named_parameters():
            if p.requires_grad:
                trains[module_group(name)] = True
        vision = config.vision_config
        return cls(
            llm_matmul_params=counts["llm"],
            llm_layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            vocab=config.vocab_size,
            vision_matmul_params=counts["vision_encoder"],
            vision_layers=vision.num_hidden_layers,
            vision_hidden=vision.hidden_size,
            projector_params=counts["projector"],
            trains=trains,
        )

    def multipliers(self) -> dict[str, int]:
        """3 trains, 2 gradients pass through, 1 forward only (order: vision -> projector -> LLM)."""
        out, upstream = {}, False
        for group in ("vision_encoder", "projector", "llm"):
            trains = self.trains[group]
            out[group] = 3 if trains else (2 if upstream else 1)
            upstream = upstream or trains
        return out

    def step_flops(
        self, sample_lengths: list[int], num_targets: int, patches_per_frame: list[int], num_visual_tokens: int
    ) -> float:
        """Model FLOPs of one optimizer step over the given work."""
        k = self.multipliers()
        tokens = sum(sample_lengths)
        llm = 2 * self.llm_matmul_params * tokens
        llm += 2 * self.llm_layers * self.hidden * sum(n * n for n in sample_lengths)  # causal: half of 4 L^2 h
        head = 2 * self.hidden * self.vocab * num_targets
        patches = sum(patches_per_frame)
        vision = 2 * self.vision_matmul_params * patches
        vision += 4 * self.vision_layers * self.vision_hidden * sum(n * n for n in patches_per_frame)
        projector = 2 * self.projector_params * num_visual_tokens
        return k["llm"] * (llm + head) + k["vision_encoder"] * vision + k["projector"] * projector


class MetricsLogger:
    """Scalars to TensorBoard / W&B (main rank only) and to ``metrics.jsonl`` in the stage folder."""

    def __init__(self, folder: str | os.PathLike, report_to: list[str], run_name: str, config: dict, enabled: bool):
        self.enabled = enabled
        self.folder = Path(folder)
        self.writer = None
        self.wandb = None
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.folder / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder / "tensorboard"))
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("report_to: wandb needs `pip install wandb`") from exc
            self.wandb = wandb.init(name=run_name, config=config, dir=str(self.folder), resume="allow")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.jsonl.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
