"""Benchmark: forward + backward of scaled-dot-product attention on a CPU, bf16 against fp32 kernels.

Why ``videollama3.model.cpu_attention`` runs training attention in fp32 on a CPU. Two shapes per row: the
vision encoder's grouped call (``segments`` frames of ``length`` patches, 4 heads of 32, no mask, as
``vision_attention._grouped_sdpa`` issues it) and the LLM's padded batch (``batch`` sequences of
``length`` tokens, 6 query heads of 32, a causal mask). Each time is the median of ``--reps`` runs after a
warm-up of: forward, ``sum().backward()``, under the default kernel choice (flash on CPU).

Usage::

    python benchmarks/cpu_attention.py             # the table in docs/benchmarks.md ("Training")
    python benchmarks/cpu_attention.py --threads 2 --reps 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (name, shape of q/k/v, causal mask): the synthetic recipe's shapes, then longer ones.
CASES = [
    ("vision: 256 frames x 36 patches", (256, 4, 36, 32), False),
    ("vision: 64 frames x 144 patches", (64, 4, 144, 32), False),
    ("vision: 16 frames x 576 patches", (16, 4, 576, 32), False),
    ("vision: 4 frames x 2304 patches", (4, 4, 2304, 32), False),
    ("LLM: 16 x 100 tokens", (16, 6, 100, 32), True),
    ("LLM: 16 x 250 tokens", (16, 6, 250, 32), True),
    ("LLM: 6 x 350 tokens", (6, 6, 350, 32), True),
    ("LLM: 2 x 1024 tokens", (2, 6, 1024, 32), True),
]


def forward_backward_ms(shape, causal: bool, dtype: torch.dtype, reps: int) -> float:
    q, k, v = (torch.randn(*shape, dtype=dtype, requires_grad=True) for _ in range(3))
    length = shape[2]
    mask = torch.ones(length, length, dtype=torch.bool).tril() if causal else None

    def run():
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()

    run()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| shape | bf16 (ms) | fp32 (ms) | bf16 / fp32 |")
    print("|---|---|---|---|")
    for name, shape, causal in CASES:
        bf16 = forward_backward_ms(shape, causal, torch.bfloat16, args.reps)
        fp32 = forward_backward_ms(shape, causal, torch.float32, args.reps)
        print(f"| {name} | {bf16:.1f} | {fp32:.1f} | {bf16 / fp32:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
