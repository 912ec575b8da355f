"""Shared fixtures of the training tests: a tiny synthetic world (base models, data, initial checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import FIXTURE_MODEL


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """One torch thread per test process: the suite runs with ``-n 2`` on 2 cores, and two intra-op threads
    per process would oversubscribe them (tiny matmuls then spend their time spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, Path]:
    """The synthetic world's tiny size, as the ``tiny`` recipe writes it (12 samples per file), and a stage-1
    checkpoint assembled from it.

    Keys: ``llm``, ``siglip``, ``data``, ``captions``, ``vqa``, ``video``, ``text`` and ``init`` (fp32).
    """
    from videollama3.synthetic.tiny import write_tiny_world
    from videollama3.training.initialize import build_initial_checkpoint

    root = tmp_path_factory.mktemp("tiny_world")
    paths = write_tiny_world(root / "data", root / "base", num_samples=12, seed=0)
    paths["init"] = build_initial_checkpoint(paths["llm"], paths["siglip"], root / "init", dtype=torch.float32)
    return paths


@pytest.fixture(scope="session")
def fixture_processor():
    from videollama3.processing import VideoLLaMA3Processor

    return VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)
