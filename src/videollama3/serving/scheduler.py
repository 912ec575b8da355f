"""Scheduling policy of the serving engine: which prompts prefill together, which sequences decode together.

The engine (:mod:`.engine`) runs what these decide:

- :func:`length_groups`: prompts admitted together are prefilled in groups of similar length (a
  left-padded prefill costs (longest prompt) x (group size));
- :class:`DecodeBatch`: sequences decoded together, with one KV cache left-padded to a common length;
  rows join (:meth:`DecodeBatch.extend`) and leave (:meth:`DecodeBatch.keep`) in place;
- :func:`choose_batch`: the running batch a freshly prefilled group joins, if any: a batch of short chats
  should not be padded to the length of a long video prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from transformers import DynamicCache

from .detokenizer import IncrementalDetokenizer, StopMatcher
from .kv_cache import add_rows, keep_rows, pad_left
from .types import Emit, PreparedPrompt, SamplingParams, SequenceHandle

T = TypeVar("T")

PREFILL_PADDING_SLACK = 1.25  # a prefill group may hold at most 25% padding (see length_groups)...
PREFILL_MASKED_MAX_LENGTH = 1024  # ...and longer prompts are only grouped with prompts of their length
DECODE_MERGE_PADDING = 2048  # sequences join a decode batch if that adds at most this many padded positions...
DECODE_PADDING_SLACK = 1.5  # ...or leaves at most 50% padding (see choose_batch)...
MAX_DECODE_BATCHES = 4  # ...and are forced into one once there are this many


@dataclass(eq=False)
class SequenceState:
    """One submitted sequence, waiting or running, as the engine's thread sees it."""

    prompt: PreparedPrompt
    params: SamplingParams
    emit: Emit
    handle: SequenceHandle
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    done: bool = False


class DecodeBatch:
    """Sequences decoded together: one KV cache, left-padded to a common length.

    Row b of every tensor belongs to ``seqs[b]``. ``last_tokens`` were sampled but are not in the cache
    yet: the next decode step feeds them at ``positions``.
    """

    def __init__(self, seqs: list[SequenceState], cache: DynamicCache, mask: torch.Tensor, last_tokens: torch.Tensor):
        self.seqs = seqs
        self.cache = cache
        self.mask = mask  # (B, T) 1 on real tokens
        self.positions = mask.sum(-1)  # (B,) position of the next token fed to the model
        self.last_tokens = last_tokens  # (B,)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def added_padding(self, other: DecodeBatch) -> int:
        """Padded positions that merging ``other`` into this batch adds (over decoding the two apart)."""
        rows = len(self.seqs) + len(other.seqs)
        return max(self.length, other.length) * rows - self.length * len(self.seqs) - other.length * len(other.seqs)

    def padded_ratio(self, other: DecodeBatch) -> float:
        """(positions) / (real tokens) of this batch and ``other`` merged."""
        rows = len(self.seqs) + len(other.seqs)
        return max(self.length, other.length) * rows / (int(self.mask.sum()) + int(other.mask.sum()))

    def extend(self, other: DecodeBatch) -> None:
        """Append ``other``'s rows (all left-padded to the longer length); only the new rows' KV is copied."""
        length = max(self.length, other.length)
        for layer, new in zip(self.cache.layers, other.cache.layers):
            add_rows(layer, new.keys, new.values)
        self.mask = torch.cat([pad_left(self.mask, length, 1), pad_left(other.mask, length, 1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.last_tokens = torch.cat([self.last_tokens, other.last_tokens])
        self.seqs = self.seqs + other.seqs

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (ascending), then drop leading columns that are padding in every remaining row.

        The rows that leave are filled with the last rows of the batch, so only the KV of rows that move
        is copied (and the order of ``seqs`` changes).
        """
        if len(rows) == len(self.seqs):
            return
        n, kept = len(rows), set(rows)
        order = list(range(n))  # new row i is old row order[i]
        holes = [i for i in range(n) if i not in kept]
        for hole, row in zip(holes, [r for r in rows if r >= n]):
            order[hole] = row
        index = torch.tensor(order, device=self.mask.device, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        real_columns = mask.any(0).nonzero()
        trim = int(real_columns[0]) if real_columns.numel() else 0
        for layer in self.cache.layers:
            keep_rows(layer, order, trim)
        self.mask = mask[:, trim:]
        self.positions = self.positions.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        self.seqs = [self.seqs[i] for i in order]


def length_groups(
    items: list[T], length: Callable[[T], int], exact_long: bool = True, padding: int = 0
) -> list[list[T]]:
    """Split prompts into prefill groups of similar ``length``.

    A left-padded prefill costs (longest prompt) x (group size) tokens, and a padding mask also makes
    SDPA leave its fused causal kernel for one that materialises the (length x length) scores: for a
    3600-token prompt beside a 3000-token one, that is several times slower than two separate
    prefills. So long prompts (over ``PREFILL_MASKED_MAX_LENGTH``) share a prefill only with prompts
    of exactly their length (no mask needed), unless ``exact_long`` is False (prompts resumed from a
    cached prefix, which need a mask anyway), and shorter ones are grouped (by increasing length) while
    padding stays under ``PREFILL_PADDING_SLACK`` of the real tokens or ``padding`` positions in all.
    """
    groups: list[list[T]] = []
    current: list[T] = []
    real = 0
    for item in sorted(items, key=length):
        n = length(item)
        if current:
            if exact_long and n > PREFILL_MASKED_MAX_LENGTH:
                fits = all(length(it) == n for it in current)
            else:
                padded = n * (len(current) + 1)
                fits = padded <= PREFILL_PADDING_SLACK * (real + n) or padded - real - n <= padding
            if not fits:
                groups.append(current)
                current, real = [], 0
        current.append(item)
        real += n
    if current:
        groups.append(current)
    return groups


def choose_batch(batches: list[DecodeBatch], group: DecodeBatch) -> DecodeBatch | None:
    """The running batch that freshly prefilled ``group`` should join, or None: it starts a batch of its own.

    Every row of a batch is padded to the batch's longest sequence, and each decode step costs
    about (rows x length) in attention and KV-cache traffic, so a batch of short chats should not
    carry a 4000-token video prompt. All batches decode in one forward pass (see
    :meth:`.engine.Engine.decode_step`), but each costs an attention call per layer and step, about as
    much as attention over a couple of thousand padded positions (for the fixture model on a CPU; the
    fixed cost of a call weighs more on a GPU). So the group joins the batch where merging adds the
    fewest padded positions, if that is at most ``DECODE_MERGE_PADDING`` or leaves at most
    ``DECODE_PADDING_SLACK`` padding; otherwise it starts a batch of its own, up to
    ``MAX_DECODE_BATCHES`` batches, beyond which it joins the cheapest one anyway. (Without the one-pass
    decode, each batch costs a whole forward pass per step: the limit on batches keeps that bounded.)
    """
    best, best_added = None, None
    for batch in batches:
        added = batch.added_padding(group)
        if best_added is None or added < best_added:
            best, best_added = batch, added
    if best is not None and (
        best_added <= DECODE_MERGE_PADDING
        or best.padded_ratio(group) <= DECODE_PADDING_SLACK
        or len(batches) >= MAX_DECODE_BATCHES
    ):
        return best
    return None
