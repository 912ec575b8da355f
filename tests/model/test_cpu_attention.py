"""Training attention on a CPU in bf16 runs its kernels in fp32: same results, same dtypes, same API."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_fixtures import FIXTURE_MODEL
from videollama3.model.cpu_attention import runs_in_fp32, sdpa, use_in_llm


def _qkv(dtype, requires_grad=True, shape=(8, 4, 36, 32)):
    torch.manual_seed(0)
    return [torch.randn(*shape, dtype=dtype, requires_grad=requires_grad) for _ in range(3)]


def test_bf16_training_attention_runs_in_fp32_and_returns_bf16():
    q, k, v = _qkv(torch.bfloat16)
    assert runs_in_fp32(q)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sdpa(q, k, v)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16

    reference = [t.detach().float().requires_grad_() for t in (q, k, v)]
    expected = F.scaled_dot_product_attention(*reference)
    expected.sum().backward()
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(q.grad.float(), reference[0].grad, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype, requires_grad", [(torch.float32, True), (torch.bfloat16, False)])
def test_fp32_and_inference_attention_are_plain_sdpa(dtype, requires_grad):
    q, k, v = _qkv(dtype, requires_grad)
    assert not runs_in_fp32(q)
    torch.testing.assert_close(sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=0, rtol=0)


def test_llm_attention_matches_sdpa():
    from videollama3 import VideoLLaMA3ForCausalLM

    ids = torch.randint(10, 400, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0  # a padded sequence: the mask path
    losses, grads = {}, {}
    for name in ("sdpa", use_in_llm()):
        model = VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL, attn_implementation=name, dtype=torch.float32)
        assert model.config._attn_implementation == name
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        losses[name] = loss.item()
        grads[name] = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    assert losses[use_in_llm()] == pytest.approx(losses["sdpa"], rel=2e-2)
    torch.testing.assert_close(grads[use_in_llm()], grads["sdpa"], atol=5e-2, rtol=1e-1)
