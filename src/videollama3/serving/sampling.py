"""Picking each sequence's next token from the logits of a decode step (or of a prefill's last position)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .scheduler import SequenceState


def sample_tokens(logits: torch.Tensor, seqs: Sequence[SequenceState]) -> torch.Tensor:
    """One token per row of (B, vocab) ``logits``, for ``seqs[row]``: argmax for greedy rows; temperature + top-p with the row's generator otherwise."""
    logits = logits.float()
    tokens = logits.argmax(-1)
    rows = [i for i, seq in enumerate(seqs) if not seq.params.greedy]
    if not rows:
        return tokens
    index = torch.tensor(rows, device=logits.device)
    temperature = torch.tensor([seqs[i].params.temperature for i in rows], device=logits.device)
    top_p = torch.tensor([seqs[i].params.top_p for i in rows], device=logits.device)
    probs = F.softmax(logits[index] / temperature[:, None], dim=-1)
    if bool((top_p < 1).any()):
        sorted_probs, order = probs.sort(-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p[:, None]
        drop[:, 0] = False
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    else:
        sorted_probs, order = probs, None
    for j, i in enumerate(rows):
        choice = torch.multinomial(sorted_probs[j], 1, generator=seqs[i].generator)
        tokens[i] = order[j, choice] if order is not None else choice
    return tokens
