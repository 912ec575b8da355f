"""Session fixtures shared by every test folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parity_fixtures import FIXTURE_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def fixture_model():
    from videollama3 import VideoLLaMA3ForCausalLM

    return VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL).eval()
