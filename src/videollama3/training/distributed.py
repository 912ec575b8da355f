"""Processes, devices and FSDP2.

Launch with ``torchrun`` (single node: ``torchrun --nproc-per-node 8 -m videollama3 train RECIPE``;
multi-node: add ``--nnodes N --node-rank R --rdzv-endpoint HOST:PORT``, the standard torchrun arguments).
Without torchrun the trainer runs in one process. NCCL is used on CUDA, gloo on CPU.

Sharding (FSDP2, ``torch.distributed.fsdp.fully_shard``): every LLM decoder layer and every vision encoder
layer is its own unit, and the root unit (the :class:`~videollama3.training.objective.TokenLoss` wrapper)
holds the rest: embeddings, final norm, LM head (tied or not, together with the embeddings), projector,
patch embedding and post-norm. Mixed precision: parameters are gathered and computed in bf16, gradients
reduced in fp32, master weights and optimizer state stay fp32. Gradients are *summed* over ranks
(divide factor 1): the loss is already normalised by the global token count.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_minutes: int = 60) -> DistEnv:
    """Join the process group that torchrun describes (``RANK``, ``WORLD_SIZE``...), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            from ..errors import ConfigError

            raise ConfigError(
                f"process with LOCAL_RANK={local_rank} has no GPU: {visible} visible on this node "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at most {visible} "
                "processes per node (torchrun --nproc-per-node), or hide the GPUs (CUDA_VISIBLE_DEVICES='') to "
                "train on the CPU"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            device_id=device if backend == "nccl" else None,
        )
    return DistEnv(rank, world_size, local_rank, device)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce(values: Sequence[float], env: DistEnv, op: str = "sum") -> list[float]:
    """Element-wise sum or max of a few numbers over all ranks (one collective, float64)."""
    if not env.distributed:
        return [float(v) for v in values]
    device = env.device if env.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_object(obj, env: DistEnv, src: int = 0):
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_model(root: nn.Module, base: nn.Module, bf16: bool) -> None:
    """Apply FSDP2 to ``root`` (the loss wrapper) with one unit per decoder / vision layer.

    Args:
        root: the module the trainer calls; it becomes the root FSDP unit.
        base: the ``VideoLLaMA3ForCausalLM`` inside it (possibly under a PEFT wrapper).
        bf16: compute in bf16 (fp32 master weights, fp32 gradient reduction).
    """
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    )
    kwargs = {"mp_policy": mp}
    # The model is still on the CPU: fully_shard moves each rank's shards (not the whole model) to the
    # device of the default mesh (the current CUDA device, or the CPU).
    for layer in [*base.model.vision_encoder.encoder.layers, *base.model.layers]:
        fully_shard(layer, **kwargs)
    fully_shard(root, **kwargs)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            # Plain SUM reductions (no AVG / PreMulSum: gloo has neither) and no division afterwards.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
