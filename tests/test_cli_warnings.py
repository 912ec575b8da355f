"""The commands a new user runs first print no warnings (deprecated transformers / torch APIs included)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from parity_fixtures import FIXTURE_MODEL, FIXTURES

WARNING = re.compile(r"\w*Warning\b|warnings\.warn")


def _stderr(*args: str) -> str:
    # -W default shows every warning once, DeprecationWarning included (Python hides those by default).
    result = subprocess.run(
        [sys.executable, "-W", "default", "-m", "videollama3", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--seed", "3", "--questions", "2"),
        (
            "chat",
            "--model",
            str(FIXTURE_MODEL),
            "--image",
            str(FIXTURES / "media" / "image_a.png"),
            "--max-new-tokens",
            "4",
            "What is this?",
        ),
    ],
    ids=["demo", "chat"],
)
def test_first_commands_print_no_warning(args):
    stderr = _stderr(*args)
    assert not WARNING.search(stderr), stderr
