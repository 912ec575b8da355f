"""What a request hands the serving engine, and what it gets back.

A request becomes a :class:`PreparedPrompt` (the processor's output, off the model thread) and
:class:`SamplingParams`; :meth:`Engine.submit <.engine.Engine.submit>` returns a :class:`SequenceHandle`
and reports the sequence's progress as :data:`Event` s (:class:`TextDelta`, then :class:`Finished` or
:class:`Failed`) through the submitter's :data:`Emit` callback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.token_layout import merged_tokens
from .cache import item_key, prefix_hashes

GREEDY_TEMPERATURE = 1e-5  # temperatures at or below this are greedy decoding (OpenAI's temperature=0)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one sequence and when to stop."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Whether text is emitted as it is generated. Without it (and without stop strings, which need the
    # text as it goes), the sequence is detokenised once, when it ends: one TextDelta with all the text.
    stream: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature <= GREEDY_TEMPERATURE


@dataclass
class PreparedPrompt:
    """One processed prompt (the processor's output for one conversation, batch dimension removed).

    Attributes:
        input_ids: (L,) token ids, pruned (one ``<image>`` id per kept visual token).
        pixel_values: (N, 588) patch rows of every item, or None for a text-only prompt.
        grid_sizes: (n_items, 3) [t, h, w] in patches; merge_sizes: (n_items,).
        compression_mask: (M,) bool, the Differential Frame Pruner's keep-mask over all visual tokens.
        item_keys: content hash of each item (see :func:`~.cache.item_key`).
        prefix_hashes: hashes of the prompt's block-aligned prefixes (see :func:`~.cache.prefix_hashes`).
        visual_tokens: number of visual tokens in ``input_ids``.

    ``item_keys`` and ``prefix_hashes`` are what the caches look up; :meth:`with_cache_keys` computes
    them (hashing every patch: call it off the model thread, as the server's request preparation does).
    """

    input_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None
    grid_sizes: torch.Tensor | None = None
    merge_sizes: torch.Tensor | None = None
    compression_mask: torch.Tensor | None = None
    item_keys: tuple[str, ...] = ()
    visual_tokens: int = 0
    prefix_hashes: tuple[str, ...] | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    def items(self) -> list[tuple[torch.Tensor, tuple[int, int, int], int]]:
        """(patch rows, grid, merge size) of each visual item, in order."""
        if self.pixel_values is None:
            return []
        grids = self.grid_sizes.reshape(-1, 3).tolist()
        merges = self.merge_sizes.reshape(-1).tolist()
        out, start = [], 0
        for (t, h, w), m in zip(grids, merges):
            n = t * h * w
            out.append((self.pixel_values[start : start + n], (t, h, w), m))
            start += n
        if start != self.pixel_values.shape[0]:
            raise InputError(
                f"grid_sizes {grids} describe {start} patches but pixel_values has {self.pixel_values.shape[0]} rows"
            )
        return out

    def kept_per_item(self) -> list[int]:
        """Visual tokens each item keeps in the prompt (after frame pruning)."""
        counts = [merged_tokens(grid, m) for _, grid, m in self.items()]
        if self.compression_mask is None:
            return counts
        return [int(part.sum()) for part in self.compression_mask.reshape(-1).split(counts)]

    def with_cache_keys(self, image_token_id: int) -> PreparedPrompt:
        """This prompt with ``item_keys`` and ``prefix_hashes`` filled in."""
        if self.prefix_hashes is not None:
            return self
        keys = tuple(item_key(rows, grid, m) for rows, grid, m in self.items())
        hashes = prefix_hashes(self.input_ids, image_token_id, keys, self.kept_per_item() if keys else ())
        return dataclasses.replace(self, item_keys=keys, prefix_hashes=hashes)


@dataclass
class TextDelta:
    """New text of a sequence (already checked against its stop strings)."""

    text: str


@dataclass
class Finished:
    """The sequence ended: ``reason`` is "stop" (EOS or a stop string) or "length"."""

    reason: str
    completion_tokens: int


@dataclass
class Failed:
    """The sequence could not be completed; ``error`` says why."""

    error: BaseException


Event = TextDelta | Finished | Failed
Emit = Callable[[Event], None]


class SequenceHandle:
    """The submitter's side of a sequence: lets it cancel (client gone, timeout).

    ``wake`` tells the engine's scheduler to look again (it drops cancelled sequences).
    """

    def __init__(self, wake: Callable[[], None]):
        self._wake = wake
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._wake()
