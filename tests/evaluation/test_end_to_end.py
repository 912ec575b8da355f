"""The real path: every benchmark's conversations through the processor and the tiny fixture checkpoint.

The tiny model's answers are random-looking tokens, so only the mechanics are checked: every sample is
answered (none failed), the results are written, the generation limit and batching work, and batched
answers equal one-by-one answers (greedy decoding with left padding).
"""

from __future__ import annotations

import json

import pytest
from eval_helpers import FIXTURE_MODEL, predictions, run_eval, scores
from tiny_datasets import BUILDERS
from tiny_video_datasets import build_mvbench

REAL = ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "3"]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_real_model_answers_every_benchmark(tmp_path, name):
    case = BUILDERS[name](tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output, *REAL, "--limit", "2", "--batch-size", "2", scripted=False) == 0
    metrics = scores(output, case.benchmark)["metrics"]
    assert metrics["n"] == min(2, len(case.responses))
    assert metrics["failed"] == 0, predictions(output, case.benchmark)
    for record in predictions(output, case.benchmark):
        assert isinstance(record["response"], str)


def test_batched_answers_equal_single_answers(tmp_path):
    case = build_mvbench(tmp_path / "data")
    single, batched = tmp_path / "single", tmp_path / "batched"
    assert run_eval(case, single, *REAL, scripted=False) == 0
    assert run_eval(case, batched, *REAL, "--batch-size", "3", scripted=False) == 0
    responses = [{r["id"]: r["response"] for r in predictions(out, "mvbench")} for out in (single, batched)]
    assert responses[0] == responses[1]
    assert scores(single, "mvbench")["metrics"] == scores(batched, "mvbench")["metrics"]


def test_summary_json_collects_benchmarks(tmp_path):
    data = tmp_path / "data"
    BUILDERS["gqa"](data)
    BUILDERS["ocrbench"](data)
    from videollama3.cli import main

    output = tmp_path / "out"
    args = ["eval", "--benchmark", "gqa,ocrbench", "--data-root", str(data), "--output", str(output), "--no-progress"]
    assert main(args + REAL) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary) == {"gqa", "ocrbench"}
    assert summary["ocrbench"]["primary_metric"] == "score"
    assert summary["gqa"]["settings"]["max_new_tokens"] == 3
