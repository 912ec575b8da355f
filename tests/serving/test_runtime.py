"""Defaults chosen when the model is loaded."""

from __future__ import annotations

import os

import torch

from videollama3.serving.runtime import default_torch_threads


def test_cpu_models_leave_the_preprocessing_workers_their_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = default_torch_threads("cpu", preprocess_workers=2)
    assert threads == max(1, min(torch.get_num_threads(), cores - 2))
    assert default_torch_threads("cpu", preprocess_workers=10_000) == 1  # never fewer than one
    assert default_torch_threads("cuda", preprocess_workers=2) is None  # GPU models: torch's default
    assert default_torch_threads("cuda:1", preprocess_workers=2) is None
