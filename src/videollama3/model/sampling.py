"""Top-p (nucleus) filtering of next-token probabilities: one rule for the serving engine and live sessions."""

from __future__ import annotations

import torch


def nucleus(probs: torch.Tensor, top_p: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities sorted high to low with the tail beyond the nucleus zeroed, and the sort's token order.

    The nucleus is the smallest prefix whose mass reaches ``top_p``; the most likely token always stays.

    Args:
        probs: (..., V) probabilities.
        top_p: a number, or (...,) one per row.
    Returns:
        (..., V) kept probabilities in sorted order (not renormalised: ``torch.multinomial`` does not need
        it), and (..., V) the vocabulary index of each sorted position.
    """
    sorted_probs, order = probs.sort(-1, descending=True)
    if isinstance(top_p, torch.Tensor):
        top_p = top_p[..., None]
    drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p  # the mass before each token already reached top_p
    drop[..., 0] = False
    return sorted_probs.masked_fill(drop, 0.0), order
