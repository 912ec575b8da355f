"""Packing: bins, and a packed micro-batch computing exactly what the samples compute one by one."""

from __future__ import annotations

import random

import pytest
import torch

from videollama3.training.data import Sample, SupervisedDataset, resolve_sources
from videollama3.training.objective import TokenLoss
from videollama3.training.packing import first_fit_decreasing, make_micro_batches, pack, pad
from videollama3.training.recipe import DataConfig, SourceConfig


def test_first_fit_decreasing_respects_the_budget_and_keeps_every_item():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(200)]
    bins = first_fit_decreasing(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert len(bins) <= 11 / 9 * (sum(lengths) / 128) + 2  # FFD's bound (vs. the fractional lower bound)
    assert first_fit_decreasing([5, 5, 5], 10) == [[0, 1], [2]]
    assert first_fit_decreasing(lengths, 128) == bins  # deterministic


@pytest.fixture(scope="module")
def mixed_samples(tiny_world) -> list[Sample]:
    """Image, multi-image, video (pruned) and text-only samples."""
    files = ("captions", "vqa", "video", "text")
    config = DataConfig(
        sources=[SourceConfig(path=str(tiny_world[name])) for name in files],
        data_folder=str(tiny_world["data"]),
        use_token_compression=True,
        mm_max_length=256,
    )
    dataset = SupervisedDataset(resolve_sources(config), tiny_world["init"], config)
    n = 12  # rows per file
    samples = [dataset[i] for i in (0, n, n + 2, 2 * n, 3 * n, 3 * n + 1)]
    assert all(isinstance(s, Sample) for s in samples)
    assert samples[3].grid_sizes[0, 0] > 1 and not samples[3].compression_mask.all()  # a pruned video
    assert samples[4].pixel_values is None  # text-only
    return samples


@pytest.fixture(scope="module")
def loss_model(tiny_world):
    from videollama3 import VideoLLaMA3ForCausalLM

    model = VideoLLaMA3ForCausalLM.from_pretrained(tiny_world["init"], attn_implementation="sdpa").train()
    return TokenLoss(model)


def loss_and_grads(objective, micro_batches):
    objective.zero_grad()
    total = 0.0
    for mb in micro_batches:
        loss = objective(**mb.model_inputs("cpu"))
        loss.backward()
        total += loss.item()
    grads = {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}
    return total, grads


def test_packed_batch_equals_samples_one_by_one(loss_model, mixed_samples):
    single_loss, single_grads = loss_and_grads(loss_model, [pack([s]) for s in mixed_samples])
    packed = pack(mixed_samples)
    assert packed.input_ids.shape == (1, sum(s.length for s in mixed_samples))
    assert packed.num_targets == sum(s.num_targets for s in mixed_samples)
    packed_loss, packed_grads = loss_and_grads(loss_model, [packed])
    assert packed_loss == pytest.approx(single_loss, rel=1e-5)
    assert single_grads.keys() == packed_grads.keys()
    for name, grad in single_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # Padded micro-batches (attention mask, no packing) agree too.
    padded_loss, padded_grads = loss_and_grads(loss_model, [pad(mixed_samples, pad_token_id=0)])
    assert padded_loss == pytest.approx(single_loss, rel=1e-5)
    for name, grad in single_grads.items():
        torch.testing.assert_close(padded_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_attention_never_crosses_samples(loss_model, mixed_samples):
    """transformers' packed-sequence detection really isolates samples on CPU SDPA (and would not with a mask)."""
    base = loss_model.base
    first, second = mixed_samples[4], mixed_samples[5]  # text-only: the hidden states compare directly
    alone = base.model(input_ids=second.input_ids[None], use_cache=False).last_hidden_state[0]
    row = pack([first, second])
    packed = base.model(input_ids=row.input_ids, position_ids=row.position_ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(packed[0, first.length :], alone, rtol=1e-5, atol=1e-5)
    masked = base.model(
        input_ids=row.input_ids,
        position_ids=row.position_ids,
        attention_mask=torch.ones_like(row.input_ids),
        use_cache=False,
    ).last_hidden_state
    assert not torch.allclose(masked[0, first.length :], alone, atol=1e-3)  # the control: a 2D mask leaks


def test_micro_batches_pad_or_pack(mixed_samples):
    packed = make_micro_batches(mixed_samples, packing=True, budget=512, micro_batch_size=1, pad_token_id=0)
    assert sum(mb.num_samples for mb in packed) == len(mixed_samples)
    assert all(mb.num_slots == mb.num_tokens <= 512 for mb in packed)  # no padding at all
    padded = make_micro_batches(mixed_samples, packing=False, budget=10**6, micro_batch_size=4, pad_token_id=0)
    assert [mb.num_samples for mb in padded] == [4, 2]
    assert sum(mb.num_slots for mb in padded) > sum(mb.num_tokens for mb in padded)


def test_padded_micro_batches_group_similar_lengths_within_the_budget(mixed_samples, loss_model):
    lengths = sorted((s.length for s in mixed_samples), reverse=True)
    budget = 2 * lengths[0]  # room for the two longest side by side, not for a third
    micro = make_micro_batches(mixed_samples, packing=False, budget=budget, micro_batch_size=4, pad_token_id=0)
    assert micro[0].sample_lengths == tuple(lengths[:2])  # longest first, together
    assert all(mb.num_slots <= budget or mb.num_samples == 1 for mb in micro)
    assert all(mb.num_samples <= 4 for mb in micro)
    assert sorted(n for mb in micro for n in mb.sample_lengths) == sorted(lengths)  # nothing lost
    in_order = make_micro_batches(mixed_samples, packing=False, budget=10**6, micro_batch_size=4, pad_token_id=0)
    assert sum(mb.num_slots for mb in micro) < sum(mb.num_slots for mb in in_order)
    # How a step is split does not change its summed loss.
    grouped_loss, _ = loss_and_grads(loss_model, micro)
    in_order_loss, _ = loss_and_grads(loss_model, in_order)
    assert grouped_loss == pytest.approx(in_order_loss, rel=1e-5)
