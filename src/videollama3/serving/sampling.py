"""Picking each sequence's next token from the logits of a decode step (or of a prefill's last position)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..model.sampling import nucleus

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
        sorted_probs, order = nucleus(probs, top_p)
    else:
        sorted_probs, order = probs, None
    for j, i in enumerate(rows):
        choice = torch.multinomial(sorted_probs[j], 1, generator=seqs[i].generator)
        tokens[i] = order[j, choice] if order is not None else choice
    return tokens
