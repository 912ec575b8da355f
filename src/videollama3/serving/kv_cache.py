"""The KV caches of running batches, and the attention that decodes several batches in one forward pass.

- :class:`AppendLayer`: one layer of a batch's KV cache, in buffers that grow in place, so that decode
  steps, sequences joining (:func:`add_rows`) and sequences leaving (:func:`keep_rows`) copy only what
  changes; :func:`make_cache` builds a transformers ``DynamicCache`` of them.
- :class:`BatchesCache` + :func:`batches_sdpa`: the caches of several batches as the one cache of a forward
  pass: everything but attention runs once for the rows of all batches, attention runs batch by batch
  (each over its own cache and padding mask, handed over as :class:`PerBatch`). Importing this module
  registers :func:`batches_sdpa` with transformers as the attention implementation :data:`BATCHES_SDPA`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

if TYPE_CHECKING:
    from .scheduler import DecodeBatch


class AppendLayer(DynamicLayer):
    """One layer's KV cache for a running batch, kept in buffers with room to grow in every direction.

    ``keys`` / ``values`` are views ``buffer[:rows, :, start:end]`` of (row capacity, heads, column
    capacity, head_dim) buffers, so that no event of continuous batching copies the whole cache:

    - a decode step writes one column (``DynamicLayer`` grows by ``torch.cat``, copying the whole
      cache of every layer at every step: with 32 sequences that costs as much as the attention);
    - sequences joining write only their own rows (a longer prompt takes spare columns on the left);
    - sequences leaving are overwritten by rows moved from the end (:meth:`keep_rows`), and dropping
      leading all-padding columns just moves ``start``.

    A buffer that is full is reallocated half as large again (amortised copies). Every position of
    the live window is written (real KV or zeros): padding must be finite, as the attention multiplies
    it by a zero weight.
    """

    def __init__(self):
        super().__init__()
        self._k: torch.Tensor | None = None  # (row capacity, heads, column capacity, head_dim)
        self._v: torch.Tensor | None = None
        self._rows = self._start = self._end = 0

    @property
    def key_buffer(self) -> torch.Tensor:
        """The (row capacity, heads, column capacity, head_dim) buffer that ``keys`` is a view of."""
        return self._k

    @property
    def _length(self) -> int:
        return self._end - self._start

    def _sync(self) -> None:
        self.keys = self._k[: self._rows, :, self._start : self._end]
        self.values = self._v[: self._rows, :, self._start : self._end]

    def _reserve(self, rows: int = 0, left: int = 0, right: int = 0) -> None:
        """Make room for ``rows`` rows in all, ``left`` free columns before the window and ``right`` after it."""
        cap_rows, cap_columns = self._k.shape[0], self._k.shape[2]
        if rows <= cap_rows and left <= self._start and self._end + right <= cap_columns:
            return
        length, room = self._length, cap_columns - self._end
        new_rows = cap_rows if rows <= cap_rows else _spare(rows, 4, 4)
        new_start = self._start if left <= self._start else left + max(64, length // 2)
        new_room = room if right <= room else right + max(64, length // 2)
        self._reallocate(new_rows, new_start, new_start + length + new_room)

    def _reallocate(self, rows: int, start: int, columns: int) -> None:
        """Move the live window into new (rows, heads, columns, head_dim) buffers, at column ``start``."""
        length = self._length
        for name in ("_k", "_v"):
            old = getattr(self, name)
            new = old.new_empty(rows, old.shape[1], columns, old.shape[3])
            new[: self._rows, :, start : start + length] = old[: self._rows, :, self._start : self._end]
            setattr(self, name, new)
        self._start, self._end = start, start + length

    def load(self, keys: torch.Tensor, values: torch.Tensor, room: int = 0) -> None:
        """Start from (B, heads, L, head_dim) states, with room for at least ``room`` more columns."""
        self.lazy_initialization(keys, values)
        rows, heads, length, dim = keys.shape
        columns = max(length + room, _spare(length, 64, 2))
        self._k = keys.new_empty(rows, heads, columns, dim)
        self._v = values.new_empty(rows, heads, columns, dim)
        self._k[:, :, :length] = keys
        self._v[:, :, :length] = values
        self._rows, self._start, self._end = rows, 0, length
        self._sync()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self._k is None:
            self.load(key_states, value_states)
            return self.keys, self.values
        added = key_states.shape[-2]
        self._reserve(right=added)
        self._k[: self._rows, :, self._end : self._end + added] = key_states
        self._v[: self._rows, :, self._end : self._end + added] = value_states
        self._end += added
        self._sync()
        return self.keys, self.values

    def add_rows(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Append the rows of (g, heads, L', head_dim) states; all rows are left-padded to the longer length."""
        extra = keys.shape[2] - self._length
        if extra > 0:  # the newcomers are longer: the rows already here get padding columns on the left
            self._reserve(left=extra)
            self._start -= extra
            self._k[: self._rows, :, self._start : self._start + extra] = 0
            self._v[: self._rows, :, self._start : self._start + extra] = 0
        rows, new = self._rows, keys.shape[0]
        self._reserve(rows=rows + new)
        pad_end = self._end - keys.shape[2]
        self._k[rows : rows + new, :, self._start : pad_end] = 0
        self._v[rows : rows + new, :, self._start : pad_end] = 0
        self._k[rows : rows + new, :, pad_end : self._end] = keys
        self._v[rows : rows + new, :, pad_end : self._end] = values
        self._rows += new
        self._sync()

    def keep_rows(self, order: list[int], trim: int) -> None:
        """Row i becomes old row ``order[i]`` (only rows that change place are copied); drop ``trim`` leading columns."""
        moved = [(i, j) for i, j in enumerate(order) if i != j]
        if moved:
            dst = torch.tensor([i for i, _ in moved], device=self._k.device)
            src = torch.tensor([j for _, j in moved], device=self._k.device)
            window = slice(self._start, self._end)
            self._k[dst, :, window] = self._k[src, :, window]
            self._v[dst, :, window] = self._v[src, :, window]
        self._rows = len(order)
        self._start += trim
        # Buffers do not shrink as rows leave, but KV memory is what bounds a batch on a GPU: once they
        # are over twice what the live window would get afresh, they are reallocated.
        rows, columns = _spare(self._rows, 4, 4), _spare(self._length, 64, 2)
        if self._k.shape[0] * self._k.shape[2] > 2 * rows * columns:
            self._reallocate(rows, 0, columns)
        self._sync()


class PerBatch:
    """Keys, values or attention masks of the batches decoded in one forward pass: one tensor per batch.

    ``rows[i]`` = (start, end): the rows of batch i in the forward pass's input.
    """

    __slots__ = ("parts", "rows")

    def __init__(self, parts: list[torch.Tensor], rows: list[tuple[int, int]]):
        self.parts = parts
        self.rows = rows


class BatchesCache(DynamicCache):
    """The KV caches of several batches, as the one cache of a forward pass that decodes them all.

    Each layer's new keys and values are split by rows into the batches' own caches, and attention
    gets each batch's whole cache back (a :class:`PerBatch`), for :func:`batches_sdpa`.
    """

    def bind(self, batches: list[DecodeBatch]) -> list[tuple[int, int]]:
        """Use these batches' caches (rows in this order) for the next forward pass; returns their rows."""
        self._batches, self._rows, start = batches, [], 0
        for batch in batches:
            self._rows.append((start, start + len(batch.seqs)))
            start += len(batch.seqs)
        return self._rows

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = [], []
        for batch, (start, end) in zip(self._batches, self._rows):
            k, v = batch.cache.update(key_states[start:end], value_states[start:end], layer_idx)
            keys.append(k)
            values.append(v)
        return PerBatch(keys, self._rows), PerBatch(values, self._rows)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(batch.cache.get_seq_length(layer_idx) for batch in self._batches)


def batches_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, except that in a decode step of several batches at once (see
    :class:`BatchesCache`) each batch's rows attend over their own KV cache with their own mask.

    Everything else in the forward pass (projections, norms, MLPs, rotary embeddings) runs once for the
    rows of all batches: on a CPU or for small batches, a forward pass per batch costs more in fixed
    overhead than attention over a few thousand padded positions (see :data:`.scheduler.DECODE_MERGE_PADDING`).
    """
    if not isinstance(key, PerBatch):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = [  # each (B_i, 1, heads, head_dim)
        sdpa_attention_forward(module, query[start:end], k, v, mask, **kwargs)[0]
        for (start, end), k, v, mask in zip(key.rows, key.parts, value.parts, attention_mask.parts)
    ]
    return torch.cat(outputs), None


BATCHES_SDPA = "videollama3_batches_sdpa"
AttentionInterface.register(BATCHES_SDPA, batches_sdpa)
AttentionMaskInterface.register(BATCHES_SDPA, sdpa_mask)  # the same masks as SDPA everywhere else


def _spare(n: int, least: int, fraction: int) -> int:
    """``n`` and room to grow: ``n / fraction`` more, at least ``least`` more."""
    return n + max(least, n // fraction)


def make_cache(config, tensors: list[tuple[torch.Tensor, torch.Tensor]] | None = None, room: int = 0) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` with appending layers, optionally holding ``tensors`` (one per layer).

    ``room``: columns the first forward pass will append (they are written in place).
    """
    cache = DynamicCache(config=config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):  # sliding-window layers stay as they are
        cache.layers = [AppendLayer() for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, tensors or []):
        if isinstance(layer, AppendLayer):
            layer.load(keys, values, room)
        else:
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
    return cache


def add_rows(layer: DynamicLayer, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Append rows of (g, heads, L', head_dim) states to a layer of a batch (all left-padded to the longer)."""
    if isinstance(layer, AppendLayer):
        layer.add_rows(keys, values)
        return
    length = max(layer.keys.shape[2], keys.shape[2])
    layer.keys = torch.cat([pad_left(layer.keys, length, 2), pad_left(keys, length, 2)])
    layer.values = torch.cat([pad_left(layer.values, length, 2), pad_left(values, length, 2)])


def keep_rows(layer: DynamicLayer, order: list[int], trim: int) -> None:
    """Row i of the layer becomes old row ``order[i]``; the first ``trim`` columns are dropped."""
    if isinstance(layer, AppendLayer):
        layer.keep_rows(order, trim)
        return
    index = torch.tensor(order, device=layer.keys.device, dtype=torch.long)
    layer.keys = layer.keys.index_select(0, index)[:, :, trim:]
    layer.values = layer.values.index_select(0, index)[:, :, trim:]


def pad_left(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)
