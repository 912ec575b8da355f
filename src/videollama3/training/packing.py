"""Micro-batches: samples packed into one row per token budget, or padded side by side.

Packing puts several samples end to end in one row of at most ``budget`` tokens (first-fit decreasing:
longest sample first, each into the first row with room). Positions restart at 0 for every sample, and
the LLM's attention is confined to each sample: with ``attention_mask=None`` and ``use_cache=False``,
transformers detects packed rows from the position ids (``masking_utils.find_packed_sequence_indices``)
and builds a block-diagonal causal mask (SDPA, FlexAttention) or variable-length calls (flash-attn). The
vision encoder already attends within each image / frame, and ``<image>`` placeholders receive the
features of their own sample because both are concatenated in the same order.

Targets are shifted *per sample* before samples are joined, so the last token of one sample is never
asked to predict the first token of the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.token_layout import positions_from_mask
from .data import Sample
from .labels import IGNORE_INDEX


def first_fit_decreasing(lengths: list[int], budget: int) -> list[list[int]]:
    """Group item indices into bins whose summed length is at most ``budget``.

    First-fit decreasing uses at most 11/9 OPT + 1 bins. Ties keep the input order, so the result is
    deterministic. Items longer than the budget get a bin of their own.

    Returns:
        bins of indices into ``lengths``, each bin in input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(budget - n)
    return [sorted(b) for b in bins]


@dataclass
class MicroBatch:
    """Model inputs of one forward / backward pass, plus the counts the trainer logs."""

    input_ids: torch.Tensor  # (B, L)
    targets: torch.Tensor  # (B, L) next-token targets, already shifted; -100 = no loss
    position_ids: torch.Tensor  # (B, L), restarting at 0 for every packed sample
    attention_mask: torch.Tensor | None  # (B, L) for padded batches; None for packed rows
    pixel_values: torch.Tensor | None = None  # (N, 588)
    grid_sizes: torch.Tensor | None = None  # (n_items, 3)
    merge_sizes: torch.Tensor | None = None  # (n_items,)
    compression_mask: torch.Tensor | None = None  # (M,)
    num_samples: int = 0
    num_tokens: int = 0  # real tokens
    num_patches: int = 0
    sample_lengths: tuple[int, ...] = ()  # for the attention FLOPs estimate

    @property
    def num_slots(self) -> int:
        """Token positions computed, padding included."""
        return self.input_ids.numel()

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    @property
    def patches_per_frame(self) -> list[int]:
        """Vision-encoder sequence length of every image / frame (attention runs within each)."""
        if self.grid_sizes is None:
            return []
        return [h * w for t, h, w in self.grid_sizes.tolist() for _ in range(t)]

    @property
    def num_visual_tokens(self) -> int:
        """Merged visual tokens the projector computes (before pruning)."""
        return 0 if self.compression_mask is None else int(self.compression_mask.numel())

    def model_inputs(self, device: torch.device | str) -> dict:
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)

        return {
            "input_ids": move(self.input_ids),
            "targets": move(self.targets),
            "position_ids": move(self.position_ids),
            "attention_mask": move(self.attention_mask),
            "pixel_values": move(self.pixel_values),
            "grid_sizes": self.grid_sizes,
            "merge_sizes": self.merge_sizes,
            "compression_mask": move(self.compression_mask),
        }


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """(L,) labels -> (L,) targets: position i is trained to predict token i + 1 of the same sample."""
    return torch.cat([labels[1:], labels.new_full((1,), IGNORE_INDEX)])


def _visual(samples: list[Sample]) -> dict:
    with_pixels = [s for s in samples if s.pixel_values is not None]
    if not with_pixels:
        return {}
    return {
        "pixel_values": torch.cat([s.pixel_values for s in with_pixels]),
        "grid_sizes": torch.cat([s.grid_sizes for s in with_pixels]),
        "merge_sizes": torch.cat([s.merge_sizes for s in with_pixels]),
        "compression_mask": torch.cat([s.compression_mask for s in with_pixels]),
    }


def pack(samples: list[Sample]) -> MicroBatch:
    """Samples end to end in one row (1, sum of lengths), positions restarting per sample."""
    return MicroBatch(
        input_ids=torch.cat([s.input_ids for s in samples])[None],
        targets=torch.cat([shifted_targets(s.labels) for s in samples])[None],
        position_ids=torch.cat([torch.arange(s.length) for s in samples])[None],
        attention_mask=None,
        num_samples=len(samples),
        num_tokens=sum(s.length for s in samples),
        num_patches=sum(s.num_patches for s in samples),
        sample_lengths=tuple(s.length for s in samples),
        **_visual(samples),
    )


def pad(samples: list[Sample], pad_token_id: int) -> MicroBatch:
    """Samples side by side, right-padded to the longest: (B, max length) with an attention mask."""
    length = max(s.length for s in samples)
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    targets = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    for b, s in enumerate(samples):
        input_ids[b, : s.length] = s.input_ids
        targets[b, : s.length] = shifted_targets(s.labels)
        attention_mask[b, : s.length] = 1
    position_ids = positions_from_mask(attention_mask)
    return MicroBatch(
        input_ids=input_ids,
        targets=targets,
        position_ids=position_ids,
        attention_mask=attention_mask,
        num_samples=batch,
        num_tokens=sum(s.length for s in samples),
        num_patches=sum(s.num_patches for s in samples),
        sample_lengths=tuple(s.length for s in samples),
        **_visual(samples),
    )


def make_micro_batches(
    samples: list[Sample], *, packing: bool, budget: int, micro_batch_size: int, pad_token_id: int
) -> list[MicroBatch]:
    """Split one rank's share of a global batch into micro-batches.

    Packing: rows of at most ``budget`` tokens (first-fit decreasing). Padding: samples sorted longest first
    and cut into micro-batches of at most ``micro_batch_size`` samples and ``budget`` padded positions
    (samples x longest; a longer sample goes alone), so that short samples are not padded to a long one's
    length. The loss is normalised over the whole step, so how a step is split does not change it.
    """
    if not samples:
        return []
    if packing:
        bins = first_fit_decreasing([s.length for s in samples], budget)
        return [pack([samples[i] for i in b]) for b in bins]
    groups: list[list[int]] = [[]]
    for i in sorted(range(len(samples)), key=lambda i: (-samples[i].length, i)):
        group = groups[-1]
        if group and (len(group) == micro_batch_size or (len(group) + 1) * samples[group[0]].length > budget):
            groups.append(group := [])
        group.append(i)
    return [pad([samples[i] for i in g], pad_token_id) for g in groups]


def placeholder_batch(pad_token_id: int) -> MicroBatch:
    """A one-token micro-batch without targets.

    Under FSDP every rank must run the same number of forward / backward passes (each one all-gathers the
    weights); a rank whose share of the global batch fits in fewer micro-batches runs these to keep step.
    """
    ids = torch.tensor([[pad_token_id]])
    return MicroBatch(ids, torch.full_like(ids, IGNORE_INDEX), torch.zeros_like(ids), None)
