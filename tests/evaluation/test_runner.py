"""The runner: failed samples, resuming, settings checks, rescoring, and 2-process data parallelism."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from eval_helpers import FIXTURE_MODEL, REPO_ROOT, SCRIPTED, predictions, run_eval, scores, write_json
from tiny_video_datasets import build_charades_sta, build_mvbench


def _seen_ids(output, benchmark):
    path = output.parent / f"{benchmark}_script.seen.jsonl"
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_failed_samples_are_recorded_counted_and_retried_on_resume(tmp_path):
    case = build_mvbench(tmp_path / "data")
    good = dict(case.responses)
    case.responses["object_shuffle/0"] = {"raise": "CUDA out of memory"}
    output = tmp_path / "out"
    # In a batch of 2 the failing sample's batch mate still gets its answer (one-by-one retry).
    assert run_eval(case, output, "--batch-size", "2") == 0
    metrics = scores(output, "mvbench")["metrics"]
    assert metrics["failed"] == 1
    assert metrics["accuracy"] == pytest.approx(40.0)  # the failed sample counts as wrong
    failed = {r["id"]: r for r in predictions(output, "mvbench")}["object_shuffle/0"]
    assert failed["response"] is None and "CUDA out of memory" in failed["error"]

    (output.parent / "mvbench_script.seen.jsonl").unlink()
    case.responses = good
    assert run_eval(case, output) == 0
    assert _seen_ids(output, "mvbench") == ["object_shuffle/0"]  # only the failed sample runs again
    metrics = scores(output, "mvbench")["metrics"]
    assert metrics["failed"] == 0 and metrics["accuracy"] == pytest.approx(60.0)


def test_interrupted_run_resumes_from_its_journal(tmp_path):
    case = build_mvbench(tmp_path / "data")
    good = dict(case.responses)
    case.responses["object_shuffle/0"] = {"interrupt": True}
    output = tmp_path / "out"
    assert run_eval(case, output) == 130
    journal = output / "mvbench" / "predictions.rank0.jsonl"
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == [
        "action_sequence/0",
        "action_sequence/1",
    ]
    assert not (output / "mvbench" / "scores.json").exists()

    (output.parent / "mvbench_script.seen.jsonl").unlink()
    case.responses = good
    assert run_eval(case, output) == 0
    assert _seen_ids(output, "mvbench") == ["object_shuffle/0", "object_shuffle/1", "episodic_reasoning/0"]
    assert scores(output, "mvbench")["metrics"]["accuracy"] == pytest.approx(60.0)
    assert not journal.exists()  # merged into predictions.jsonl


def test_resume_refuses_other_settings_unless_overwrite(tmp_path, capsys):
    case = build_mvbench(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    assert run_eval(case, output, "--fps", "2") == 2
    assert "other settings" in capsys.readouterr().err
    assert run_eval(case, output, "--fps", "2", "--overwrite") == 0
    assert scores(output, "mvbench")["settings"]["fps"] == 2


def test_limit_then_full_run_reuses_the_first_answers(tmp_path):
    case = build_charades_sta(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output, "--limit", "1") == 0
    assert scores(output, "charades_sta")["metrics"]["n"] == 1
    assert run_eval(case, output) == 0
    assert _seen_ids(output, "charades_sta") == ["AB12C_0", "AB12C_1", "AB12C_2"]
    assert scores(output, "charades_sta")["metrics"]["mIoU"] == pytest.approx(100 * (1 + 1 / 3) / 3)


def test_rescore_needs_no_model(tmp_path):
    from videollama3.cli import main

    case = build_charades_sta(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    before = scores(output, "charades_sta")["metrics"]
    args = ["eval", "--benchmark", "charades_sta", "--data-root", str(case.data_root), "--output", str(output)]
    assert main([*args, "--rescore", "--no-progress"]) == 0
    assert scores(output, "charades_sta")["metrics"] == before


# --------------------------------------------------------------------------------------------------
# Data parallel: torchrun, 2 CPU processes, gloo
# --------------------------------------------------------------------------------------------------


def _torchrun(args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "videollama3",
        "eval",
        "--no-progress",
        *args,
    ]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_give_the_same_scores_as_one(tmp_path):
    case = build_mvbench(tmp_path / "data")
    # A sample whose video is missing fails on whichever rank gets it; the run completes and counts it.
    write_json(
        case.data_root / "json" / "moving_count.json",
        [{"video": "missing.mp4", "question": "How many?", "candidates": ["1", "2"], "answer": "1"}],
    )
    real = ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "3"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_eval(case, one, *real, scripted=False) == 0
    common = ["--benchmark", "mvbench", "--data-root", str(case.data_root), *real]
    result = _torchrun([*common, "--output", str(two)])
    assert result.returncode == 0, result.stderr[-3000:]
    single, parallel = scores(one, "mvbench"), scores(two, "mvbench")
    assert parallel["world_size"] == 2
    assert parallel["metrics"] == single["metrics"]
    assert parallel["metrics"]["failed"] == 1 and parallel["metrics"]["n"] == 6
    # Same answers, merged in dataset order, made by both ranks.
    merged = predictions(two, "mvbench")
    assert [(r["id"], r["response"]) for r in merged] == [(r["id"], r["response"]) for r in predictions(one, "mvbench")]
    assert "video not found" in next(r["error"] for r in merged if r["id"] == "moving_count/0")


def test_a_rank_that_cannot_load_the_model_stops_all_ranks(tmp_path):
    case = build_mvbench(tmp_path / "data")
    script = tmp_path / "mvbench_script.json"
    script.write_text(json.dumps({**case.responses, "__fail_on_rank__": 1}))
    args = [
        "--benchmark",
        "mvbench",
        "--data-root",
        str(case.data_root),
        "--model",
        str(script),
        "--predictor",
        SCRIPTED,
    ]
    result = _torchrun([*args, "--output", str(tmp_path / "out")])
    assert result.returncode != 0
    # Both ranks report the reason and exit (none waits forever for the other).
    assert (
        result.stderr.count("loading the model failed on 1 of 2 processes: rank 1: RuntimeError: this rank cannot") == 2
    )
