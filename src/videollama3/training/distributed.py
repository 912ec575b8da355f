"""FSDP2 sharding of the training model (processes and collectives: :mod:`videollama3.distributed`).

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

import torch
from torch import nn

__all__ = ["shard_model"]


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
