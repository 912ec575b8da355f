"""Differential Frame Pruner (DiffFP).

Consecutive video frames are often nearly identical. DiffFP drops a merged visual token of frame ``f``
when the pixels it covers barely changed since frame ``f - 1``: the mean absolute difference of the
normalised pixel values, scaled by 255, must exceed ``threshold`` (0.1 by default) for the token to stay.
The first frame is always kept, every frame keeps at least ``min_tokens`` tokens, and images (or 1-frame
videos) are never pruned. The vision encoder still sees every patch: pruning only removes tokens from
the sequence the LLM reads.

This module is the single implementation used by the processor (which prunes the prompt per sample, so
batches work) and by the model (which prunes when handed unpruned inputs, as the official code does).
"""

from __future__ import annotations

import torch

DEFAULT_THRESHOLD = 0.1
DEFAULT_MIN_TOKENS = 1
PATCH_DIM = 3 * 14 * 14
_DIFF_CHUNK_ELEMENTS = 1 << 23  # 32 MB of float32 differences at a time


def item_pruning_mask(
    pixel_rows: torch.Tensor,
    grid_size: tuple[int, int, int],
    merge_size: int,
    threshold: float = DEFAULT_THRESHOLD,
    min_tokens: int = DEFAULT_MIN_TOKENS,
) -> torch.Tensor:
    """Keep-mask of one image or video.

    Args:
        pixel_rows: (t * gh * gw, C*P*P) patch rows of the item in merge-block order.
        grid_size: (t, gh, gw) in patches.
        merge_size: m, the spatial merge of this item.

    Returns:
        (t * gh/m * gw/m,) bool, True for tokens that stay.
    """
    t, gh, gw = (int(x) for x in grid_size)
    m = int(merge_size)
    tokens_per_frame = (gh // m) * (gw // m)
    if t <= 1:
        return torch.ones(t * tokens_per_frame, dtype=torch.bool, device=pixel_rows.device)
    # Thanks to the merge-block patch order, m*m consecutive rows form one merged token.
    frames = pixel_rows.reshape(t, tokens_per_frame, -1)  # (t, tokens, m*m*C*P*P)
    diff = torch.empty(t - 1, tokens_per_frame, dtype=torch.float32, device=pixel_rows.device)  # (t-1, tokens)
    # A few frames at a time: the whole difference at once is a temporary as large as the video's pixels.
    step = max(1, _DIFF_CHUNK_ELEMENTS // frames[0].numel())
    for start in range(0, t - 1, step):
        stop = min(start + step, t - 1)
        delta = frames[start + 1 : stop + 1].float() - frames[start:stop].float()
        diff[start:stop] = delta.abs_().mean(dim=-1)
    diff *= 255.0
    first = torch.full((1, tokens_per_frame), threshold + 1.0, dtype=diff.dtype, device=diff.device)
    keep = torch.cat([first, diff], dim=0) > threshold  # (t, tokens)
    starved = keep.sum(dim=-1) < min_tokens
    if starved.any():
        keep[starved, :min_tokens] = True
    return keep.flatten()


def pruning_mask(
    pixel_values: torch.Tensor,
    grid_sizes: torch.Tensor,
    merge_sizes: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    min_tokens: int = DEFAULT_MIN_TOKENS,
) -> torch.Tensor:
    """Keep-mask over every merged visual token of a packed batch of items.

    Args:
        pixel_values: (N, C*P*P) patch rows of all items, concatenated.
        grid_sizes: (n_items, 3) [t, gh, gw] per item.
        merge_sizes: (n_items,) merge size per item.

    Returns:
        (sum_i t_i * gh_i/m_i * gw_i/m_i,) bool.
    """
    grid_sizes = torch.as_tensor(grid_sizes).reshape(-1, 3).tolist()
    merge_sizes = torch.as_tensor(merge_sizes).reshape(-1).tolist()
    masks, start = [], 0
    for (t, gh, gw), m in zip(grid_sizes, merge_sizes):
        n = t * gh * gw
        masks.append(item_pruning_mask(pixel_values[start : start + n], (t, gh, gw), m, threshold, min_tokens))
        start += n
    if start != pixel_values.shape[0]:
        from ..errors import InputError

        raise InputError(f"pixel_values has {pixel_values.shape[0]} patch rows but grid_sizes describe {start} patches")
    if not masks:
        return torch.ones(0, dtype=torch.bool, device=pixel_values.device)
    return torch.cat(masks)
