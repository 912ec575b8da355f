"""Attention restricted to segments of a packed sequence (one segment per image or video frame).

The vision encoder packs every image and frame of a batch into one sequence of patches; each patch may
attend only to patches of its own image or frame. A dense (N, N) block-diagonal mask would cost O(N^2)
memory (a 180-frame video is ~60k patches: 14 GB of mask per layer in fp32), so no backend here builds
one. Backends:

* ``"sdpa"``: ``scaled_dot_product_attention`` per group of consecutive equal-length segments (all frames
  of a video share one length, so a video is a single batched call). Works everywhere; CPU default.
* ``"flash"``: ``flash_attn_varlen_func`` over ``cu_seqlens`` (CUDA, when flash-attn is installed).
* ``"flex"``: FlexAttention with a document block mask (CUDA, torch >= 2.5).

``"auto"`` picks flash, then flex, on CUDA and sdpa elsewhere.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "flash", "flex")
# Upper bound on (segments x heads x length^2) scores one sdpa call may need if a kernel materialises them.
_MAX_SCORES_PER_CALL = 1 << 28


@functools.cache
def _flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        from .errors import ConfigError

        raise ConfigError(f"vision attention backend {backend!r} is unknown: use one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        return "flash" if _flash_attn_available() else "flex"
    return "sdpa"


def segment_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: list[int],
    scale: float,
    backend: str = "auto",
    dropout: float = 0.0,
) -> torch.Tensor:
    """Non-causal attention within segments.

    Args:
        q, k, v: (N, heads, head_dim), segments concatenated along N.
        seq_lens: length of each segment; sums to N.

    Returns:
        (N, heads, head_dim)
    """
    backend = resolve_backend(backend, q.device)
    if backend == "flash":
        return _flash_varlen(q, k, v, seq_lens, scale, dropout)
    if backend == "flex":
        return _flex_document(q, k, v, seq_lens, scale)
    return _grouped_sdpa(q, k, v, seq_lens, scale, dropout)


def _equal_length_runs(seq_lens: list[int]) -> list[tuple[int, int, int]]:
    """(start, length, count) for each run of consecutive segments of equal length."""
    runs, start, i = [], 0, 0
    while i < len(seq_lens):
        j = i
        while j < len(seq_lens) and seq_lens[j] == seq_lens[i]:
            j += 1
        runs.append((start, seq_lens[i], j - i))
        start += seq_lens[i] * (j - i)
        i = j
    return runs


def _grouped_sdpa(q, k, v, seq_lens, scale, dropout):
    heads, head_dim = q.shape[1], q.shape[2]
    out = torch.empty_like(q)
    for start, length, count in _equal_length_runs(seq_lens):
        # Chunk runs so that a kernel that materialises scores stays bounded in memory.
        per_call = max(1, _MAX_SCORES_PER_CALL // max(1, heads * length * length))
        for first in range(0, count, per_call):
            n = min(per_call, count - first)
            lo = start + first * length
            hi = lo + n * length

            def view(x, lo=lo, hi=hi, n=n, length=length):  # (n*length, H, D) -> (n, H, length, D)
                return x[lo:hi].reshape(n, length, heads, head_dim).transpose(1, 2)

            o = F.scaled_dot_product_attention(view(q), view(k), view(v), dropout_p=dropout, scale=scale)
            out[lo:hi] = o.transpose(1, 2).reshape(n * length, heads, head_dim)
    return out


def _cu_seqlens(seq_lens: list[int], device) -> torch.Tensor:
    return F.pad(torch.tensor(seq_lens, device=device).cumsum(0), (1, 0)).to(torch.int32)


def _flash_varlen(q, k, v, seq_lens, scale, dropout):
    from flash_attn import flash_attn_varlen_func

    cu = _cu_seqlens(seq_lens, q.device)
    max_len = max(seq_lens)
    return flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, dropout_p=dropout, softmax_scale=scale)


def _flex_document(q, k, v, seq_lens, scale):
    from torch.nn.attention.flex_attention import create_block_mask

    n = q.shape[0]
    document = torch.repeat_interleave(
        torch.arange(len(seq_lens), device=q.device), torch.tensor(seq_lens, device=q.device)
    )  # (N,) segment id of every patch

    def same_document(b, h, q_idx, kv_idx):
        return document[q_idx] == document[kv_idx]

    block_mask = create_block_mask(same_document, B=None, H=None, Q_LEN=n, KV_LEN=n, device=q.device)
    out = _compiled_flex()(
        q.transpose(0, 1).unsqueeze(0),
        k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0),
        block_mask=block_mask,
        scale=scale,
    )  # (1, H, N, D)
    return out[0].transpose(0, 1)


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)
