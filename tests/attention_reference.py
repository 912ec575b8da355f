"""Dense per-segment attention: the reference the segment attention backends are checked against."""

from __future__ import annotations

import torch


def dense_segment_attention(q, k, v, seq_lens, scale):
    """(N, heads, head_dim) inputs, segments concatenated along N -> fp32 output of the same shape."""
    outs, start = [], 0
    for n in seq_lens:
        qs, ks, vs = (x[start : start + n].float().transpose(0, 1) for x in (q, k, v))  # (H, n, D)
        weights = torch.softmax(qs @ ks.transpose(-1, -2) * scale, dim=-1)
        outs.append((weights @ vs).transpose(0, 1))
        start += n
    return torch.cat(outs)
