"""Attention restricted to segments of a packed sequence (one segment per image or video frame).

The vision encoder packs every image and frame of a batch into one sequence of patches; each patch may
attend only to patches of its own image or frame. A dense (N, N) block-diagonal mask would cost O(N^2)
memory (a 180-frame video is ~60k patches: 14 GB of mask per layer in fp32), so no backend here builds
one. Backends:

* ``"sdpa"``: ``scaled_dot_product_attention`` per group of consecutive equal-length segments (all frames
  of a video share one length, so a video is a single batched call). Works everywhere.
* ``"flash"``: ``flash_attn_varlen_func`` over ``cu_seqlens`` (CUDA, when flash-attn is installed).
* ``"flex"``: FlexAttention with a document block mask (torch.compile; for many segments of different
  lengths, e.g. a batch of images of many sizes).

``"auto"`` picks flash on CUDA when flash-attn is installed, else sdpa: on an H200 the grouped sdpa call
was 1.4-3.7x faster than flex for the SigLIP encoder on 8-180 frame videos (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

from .cpu_attention import sdpa

BACKENDS = ("auto", "sdpa", "flash", "flex")
# Upper bound on (segments x heads x length^2) scores one sdpa call may need if a kernel materialises them.
_MAX_SCORES_PER_CALL = 1 << 28


@functools.cache
def _flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        from ..errors import ConfigError

        raise ConfigError(f"vision attention backend {backend!r} is unknown: use one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda" and _flash_attn_available():
        return "flash"
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

            o = sdpa(view(q), view(k), view(v), dropout_p=dropout, scale=scale)
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
    block_mask = document_block_mask(seq_lens, q.device)
    out = _compiled_flex()(
        q.transpose(0, 1).unsqueeze(0),
        k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0),
        block_mask=block_mask,
        scale=scale,
    )  # (1, H, N, D)
    return out[0].transpose(0, 1)


def document_block_mask(seq_lens: list[int], device, block_size: int = 128):
    """FlexAttention ``BlockMask`` of the block-diagonal "same segment" pattern, built from the segment
    boundaries alone.

    ``create_block_mask`` would evaluate the mask function on all N x N pairs (eagerly it materialises
    them: ~30 GB for a 180-frame video's 58k patches). Here each (query block, key block) pair of
    ``block_size`` tokens is classified from the segments it spans, so the cost is (N / block_size)^2
    booleans: blocks inside one segment are *full* (no mask function needed), blocks that straddle a
    segment boundary are *partial* (the mask function decides per pair), all others are skipped.
    """
    from torch.nn.attention.flex_attention import BlockMask

    n = sum(seq_lens)
    lengths = torch.tensor(seq_lens, device=device)
    ends = lengths.cumsum(0)  # (S,) exclusive end of each segment
    starts = ends - lengths
    document = torch.repeat_interleave(torch.arange(len(seq_lens), device=device), lengths)  # (N,)

    blocks = -(-n // block_size)
    index = torch.arange(blocks, device=device)  # (B,)
    first = index * block_size  # (B,) first token of each block
    last = torch.clamp(first + block_size, max=n) - 1  # (B,) last token of each block
    first_doc, last_doc = document[first], document[last]
    # Key blocks a query block can see: those overlapping [start of its first segment, end of its last).
    lo = starts[first_doc] // block_size
    hi = (ends[last_doc] - 1) // block_size
    visible = (index[None, :] >= lo[:, None]) & (index[None, :] <= hi[:, None])  # (B, B)
    one_doc = (first_doc == last_doc) & (last - first + 1 == block_size)  # whole block inside one segment
    full = visible & one_doc[:, None] & one_doc[None, :] & (first_doc[:, None] == first_doc[None, :])
    partial = visible & ~full

    def ordered(selected):  # (B, B) bool -> counts (1, 1, B) and the selected columns first (1, 1, B, B)
        counts = selected.sum(-1, dtype=torch.int32)
        columns = torch.argsort(selected.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
        return counts[None, None], columns[None, None]

    def same_document(b, h, q_idx, kv_idx):
        return document[q_idx] == document[kv_idx]

    kv_num_blocks, kv_indices = ordered(partial)
    full_num_blocks, full_indices = ordered(full)
    return BlockMask.from_kv_blocks(
        kv_num_blocks,
        kv_indices,
        full_num_blocks,
        full_indices,
        BLOCK_SIZE=block_size,
        mask_mod=same_document,
        seq_lengths=(n, n),
    )


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)
