"""Segment attention backends agree with a dense per-segment reference and never build an N x N mask."""

from __future__ import annotations

import pytest
import torch

from attention_reference import dense_segment_attention
from videollama3.errors import ConfigError
from videollama3.model.vision_attention import _equal_length_runs, resolve_backend, segment_attention


@pytest.mark.parametrize("seq_lens", [[7], [5, 5, 5, 3, 9, 9], [1, 2, 3]])
def test_grouped_sdpa_matches_reference(seq_lens):
    torch.manual_seed(0)
    n = sum(seq_lens)
    q, k, v = (torch.randn(n, 4, 16) for _ in range(3))
    got = segment_attention(q, k, v, seq_lens, scale=0.25, backend="sdpa")
    torch.testing.assert_close(got, dense_segment_attention(q, k, v, seq_lens, 0.25), atol=1e-5, rtol=1e-5)


def test_equal_length_runs_group_frames_of_a_video():
    assert _equal_length_runs([4, 4, 4, 2, 4]) == [(0, 4, 3), (12, 2, 1), (14, 4, 1)]


def test_backend_selection():
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(ConfigError, match="unknown"):
        resolve_backend("dense", torch.device("cpu"))


def test_flex_document_mask_matches_reference():
    """The CUDA varlen path (FlexAttention) also runs on CPU through torch.compile, slowly: checked once here."""
    torch.manual_seed(0)
    seq_lens = [5, 5, 7, 16]
    q, k, v = (torch.randn(sum(seq_lens), 4, 16) for _ in range(3))
    got = segment_attention(q, k, v, seq_lens, scale=0.25, backend="flex")
    torch.testing.assert_close(got, dense_segment_attention(q, k, v, seq_lens, 0.25), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "seq_lens", [[5, 5, 7, 16], [128] * 3, [200, 56, 300, 1], [36] * 40 + [7, 130, 1, 64], [129, 127, 128, 256]]
)
def test_document_block_mask_equals_flex_mask_of_the_mask_function(seq_lens):
    """Built from segment boundaries (no N x N evaluation), it is the block mask flex would derive itself."""
    from torch.nn.attention.flex_attention import create_block_mask

    from videollama3.model.vision_attention import document_block_mask

    n = sum(seq_lens)
    document = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    expected = create_block_mask(lambda b, h, q, k: document[q] == document[k], None, None, n, n, device="cpu")
    got = document_block_mask(seq_lens, "cpu")
    assert torch.equal(got.to_dense(), expected.to_dense())
    assert torch.equal(got.kv_num_blocks, expected.kv_num_blocks)
    assert torch.equal(got.full_kv_num_blocks, expected.full_kv_num_blocks)
