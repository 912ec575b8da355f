"""How many tokens a visual item becomes, and where each token of a padded row sits.

Used by the model, the processor, the serving engine and sequence packing, so that these small formulas
exist once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def merged_tokens(grid: Iterable[int], merge_size: int) -> int:
    """LLM tokens of one image / video: ``t * (h // m) * (w // m)`` for its ``[t, h, w]`` grid in patches,
    before the Differential Frame Pruner drops any."""
    t, h, w = (int(v) for v in grid)
    m = int(merge_size)
    return t * (h // m) * (w // m)


def merged_tokens_per_item(grid_sizes: torch.Tensor, merge_sizes: torch.Tensor) -> list[int]:
    """:func:`merged_tokens` of every item: ``grid_sizes`` (n_items, 3), ``merge_sizes`` (n_items,)."""
    grids = torch.as_tensor(grid_sizes).reshape(-1, 3).tolist()
    merges = torch.as_tensor(merge_sizes).reshape(-1).tolist()
    return [merged_tokens(grid, m) for grid, m in zip(grids, merges)]


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) contiguous positions over the real tokens of each row; padding gets 0 (left or right)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
