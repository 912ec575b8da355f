"""Attention for training in bf16 on a CPU: the kernels run in fp32.

PyTorch's CPU flash-attention backward is much slower in bf16 than in fp32 for the short sequences of
small models: forward and backward of one vision-encoder layer over 256 frames of 36 patches take 94 ms in
bf16 and 13 ms in fp32, and one LLM layer over 16 sequences of 100 tokens 18 ms against 4 ms (2-core CPU,
torch 2.13; ``benchmarks/cpu_attention.py``, docs/benchmarks.md). So while autograd records a bf16 attention on
a CPU, :func:`sdpa` runs it in fp32 (more precise, not less) and returns the input dtype. Inference and
GPUs are unchanged.

The LLM (transformers' Qwen2) picks its attention function by name: :func:`use_in_llm` registers
``"sdpa_fp32_cpu"`` (transformers' SDPA path around :func:`sdpa`, with SDPA's masks) for the trainer.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LLM_IMPLEMENTATION = "sdpa_fp32_cpu"


def runs_in_fp32(q: torch.Tensor) -> bool:
    """Whether an attention over ``q`` is recorded for a backward pass in half precision on a CPU."""
    return (
        q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and torch.is_grad_enabled()
        and q.requires_grad
    )


def _fp32(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Floating tensors (inputs, additive masks) in fp32; boolean masks and ``None`` as they are."""
    return tensor.float() if tensor is not None and tensor.is_floating_point() else tensor


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, in fp32 when :func:`runs_in_fp32` (output in ``q``'s dtype)."""
    if not runs_in_fp32(q):
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    if "attn_mask" in kwargs:
        kwargs["attn_mask"] = _fp32(kwargs["attn_mask"])
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
        out = F.scaled_dot_product_attention(_fp32(q), _fp32(k), _fp32(v), **kwargs)
    return out.to(q.dtype)


def _llm_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention with :func:`sdpa`'s fp32 rule (same signature and masks)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not runs_in_fp32(query):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
        out, weights = sdpa_attention_forward(
            module, _fp32(query), _fp32(key), _fp32(value), _fp32(attention_mask), **kwargs
        )
    return out.to(query.dtype), weights


@functools.cache
def use_in_llm() -> str:
    """Register the LLM attention implementation (idempotent); returns its name for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(LLM_IMPLEMENTATION, _llm_attention_forward)
    AttentionMaskInterface.register(LLM_IMPLEMENTATION, sdpa_mask)
    return LLM_IMPLEMENTATION
