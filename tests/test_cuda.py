"""The CUDA paths give the CPU's answers: parity fixtures, vision attention backends, batching, bf16, training.

Skipped without a CUDA device (CI has none); on a GPU machine run ``pytest tests/test_cuda.py``. The
training tests in ``tests/training`` also run on the GPU there (the trainer picks CUDA when present).
"""

from __future__ import annotations

import copy

import pytest
import torch

from attention_reference import dense_segment_attention
from parity_fixtures import CASE_NAMES, left_pad_batch, load_case
from videollama3.model.vision_attention import resolve_backend, segment_attention

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
CUDA = torch.device("cuda")


def _to(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@pytest.fixture(scope="module")
def cuda_model(fixture_model):
    # TF32 would round fp32 matmuls to 10-bit mantissas: parity is checked in true fp32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return copy.deepcopy(fixture_model).to(CUDA).eval()


def test_auto_backend_on_cuda_is_flash_or_grouped_sdpa():
    assert resolve_backend("auto", CUDA) in ("flash", "sdpa")


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_segment_attention_backends_on_cuda(backend, dtype):
    torch.manual_seed(0)
    seq_lens = [36] * 20 + [7, 130, 1, 64]  # a video's equal frames, then images of other sizes
    q, k, v = (torch.randn(sum(seq_lens), 16, 72, device=CUDA, dtype=dtype) for _ in range(3))
    got = segment_attention(q, k, v, seq_lens, scale=72**-0.5, backend=backend)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), dense_segment_attention(q, k, v, seq_lens, 72**-0.5), atol=tol, rtol=tol)


def test_long_video_attention_needs_no_dense_mask_on_cuda():
    """180 frames of 324 patches: a dense (N, N) mask would be 58320^2 bools = 3.4 GB; the kernels need MBs."""
    seq_lens = [324] * 180
    q, k, v = (torch.randn(sum(seq_lens), 16, 72, device=CUDA, dtype=torch.bfloat16) for _ in range(3))
    for backend in sorted({"sdpa", "flex", resolve_backend("auto", CUDA)}):
        segment_attention(q, k, v, seq_lens, scale=72**-0.5, backend=backend)  # warm-up (compiles flex)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        segment_attention(q, k, v, seq_lens, scale=72**-0.5, backend=backend)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        assert extra < 512 * 2**20, f"{backend}: {extra / 2**20:.0f} MiB over the inputs"


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("backend", ["auto", "flex"])
def test_parity_with_reference_on_cuda(cuda_model, name, backend):
    """The fixture README's fp32 tolerances, on the GPU, with the default and the flex vision attention."""
    cuda_model.set_vision_attention_backend(backend)
    try:
        _check_case(cuda_model, name)
    finally:
        cuda_model.set_vision_attention_backend("auto")


def _check_case(cuda_model, name):
    _, inputs, outputs = load_case(name)
    inputs = _to(inputs, CUDA)
    with torch.no_grad():
        if "pixel_values" in inputs:
            features = cuda_model.vision_encoder(inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"])
            torch.testing.assert_close(features.cpu(), outputs["vision_features"], atol=1e-5, rtol=0)
            mask = cuda_model.compute_compression_mask(
                inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"]
            )
            assert torch.equal(mask.cpu(), outputs["compression_mask"])
        logits = cuda_model(**inputs).logits[0]
        torch.testing.assert_close(logits.cpu(), outputs["logits"], atol=1e-4, rtol=0)
        generated = cuda_model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated[0].tolist() == outputs["generated_ids"].tolist()


def test_batch_of_different_media_on_cuda_matches_single_runs(cuda_model):
    batch, expected = left_pad_batch(["image_single", "video_static_pruned", "text_multiturn", "multi_image"])
    with torch.no_grad():
        logits = cuda_model(**_to(batch, CUDA)).logits.cpu()
        generated = cuda_model.generate(**_to(batch, CUDA), max_new_tokens=6, do_sample=False).cpu()
    for row, out in enumerate(expected):
        n = out["logits"].shape[0]
        torch.testing.assert_close(logits[row, -n:], out["logits"], atol=1e-4, rtol=0)
        assert generated[row].tolist() == out["generated_ids"].tolist()


def test_bf16_on_cuda_stays_close_to_fp32(cuda_model):
    """bf16 is the GPU default: logits within bf16 rounding of the fp32 reference, batched like single."""
    model = copy.deepcopy(cuda_model).to(torch.bfloat16)
    names = ["image_single", "video_trimmed", "text_multiturn"]
    batch, expected = left_pad_batch(names)
    with torch.no_grad():
        batched = model(**_to(batch, CUDA)).logits.float().cpu()
        for row, (name, out) in enumerate(zip(names, expected)):
            single = model(**_to(load_case(name)[1], CUDA)).logits[0].float().cpu()
            n = out["logits"].shape[0]
            scale = out["logits"].abs().max()
            assert (single - out["logits"]).abs().max() < 0.05 * scale
            assert (batched[row, -n:] - single).abs().max() < 0.05 * scale
            agree = (single.argmax(-1) == out["logits"].argmax(-1)).float().mean()
            assert agree > 0.9, f"{name}: bf16 argmax agrees with fp32 at {agree:.0%} of positions"


def test_training_step_on_cuda_bf16(fixture_model):
    """Forward + backward in bf16 autocast on the GPU: finite loss and gradients that match the CPU's."""
    _, inputs, _ = load_case("video_static_pruned")
    labels = inputs["input_ids"].clone()
    labels[labels == fixture_model.config.image_token_index] = -100
    grads = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(fixture_model).to(device).train()
        loss = model(**_to(inputs, device), labels=labels.to(device)).loss
        loss.backward()
        grads[device] = (loss.item(), model.vision_encoder.embeddings.patch_embedding.weight.grad.cpu())
        if device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16_loss = model(**_to(inputs, device), labels=labels.to(device)).loss
            assert torch.isfinite(bf16_loss) and abs(bf16_loss.item() - loss.item()) < 0.05 * loss.item()
    assert abs(grads["cpu"][0] - grads["cuda"][0]) < 1e-4
    torch.testing.assert_close(grads["cuda"][1], grads["cpu"][1], atol=1e-5, rtol=1e-3)
