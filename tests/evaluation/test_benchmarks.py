"""Every benchmark, end to end through ``videollama3 eval``, on a tiny dataset in its published layout.

The answers come from a scripted predictor (``--predictor``), so each metric is checked against a value
computed by hand from those answers (see ``eval_helpers``). The same datasets run through the real
tiny model in ``test_end_to_end.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from eval_helpers import Case, make_png, metric, predictions, run_eval, scores, seen, write_json
from tiny_datasets import BUILDERS
from tiny_video_datasets import build_egoschema, build_longvideobench, build_mvbench, build_videomme


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_benchmark_metrics_from_scripted_answers(tmp_path, name):
    case = BUILDERS[name](tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    result = scores(output, case.benchmark)
    metrics = result["metrics"]
    for path, value in case.expected.items():
        assert metric(metrics, path) == pytest.approx(value), path
    assert metrics["n"] == len(case.responses)
    assert metrics["failed"] == 0
    # The settings used are recorded, and every sample is in the merged predictions, in dataset order.
    assert result["settings"] == {
        "fps": 1,
        "max_frames": 180,
        "max_visual_tokens": 16384,
        "max_new_tokens": 2048,
        "batch_size": 1,
    }
    assert {r["id"] for r in predictions(output, case.benchmark)} == set(case.responses)
    assert not list((output / case.benchmark).glob("predictions.rank*.jsonl"))


def test_official_prompts_are_used(tmp_path):
    case = build_mvbench(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    request = seen(output, "mvbench")["action_sequence/0"]
    assert request["texts"] == [
        "Question: What did the person do first?\nOptions:\n(A) pick up\n(B) sit down\n"
        "Answer with the option's letter from the given choices directly and only give the best option."
    ]
    video = request["media"][0]
    assert (video["fps"], video["max_frames"], video["start_time"], video["end_time"]) == (1, 180, 0.0, 3.0)
    assert seen(output, "mvbench")["episodic_reasoning/0"]["media"][0]["video_path"].endswith("clip1")


def test_videomme_subtitles_are_chosen_at_the_sampled_frame_times(tmp_path):
    case = build_videomme(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    requests = seen(output, "videomme")
    without, with_sub = requests["001-1"]["texts"][0], requests["001-1@sub"]["texts"][0]
    assert without.startswith("Select the best answer to the following multiple-choice question based on the video.")
    assert without.endswith(
        "A. one\nB. two\nC. three\nD. four\nAnswer with the option's letter from the given "
        "choices directly and only give the best option. The best answer is:"
    )
    # Frames at 0, 1, 2, 3 s: the cue 0.5-1.5 s covers t = 1; the cue 2.2-2.8 s covers no frame.
    assert with_sub == "This video's subtitles are listed below:\nhello world\n" + without
    # A video without a subtitle file gets an empty subtitle list, as in the official code.
    assert requests["002-1@sub"]["texts"][0].startswith("This video's subtitles are listed below:\n\nSelect")


def test_videomme_variants(tmp_path):
    case = build_videomme(tmp_path / "data")
    case.benchmark = "videomme_w_sub"
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    metrics = scores(output, "videomme_w_sub")["metrics"]
    assert metrics["n"] == 2  # ids without the "@sub" suffix: scripted answers for "001-1", "002-1"
    assert metrics["accuracy"] == pytest.approx(50.0)


def test_longvideobench_interleaves_subtitles_between_frames(tmp_path):
    case = build_longvideobench(tmp_path / "data")
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    requests = seen(output, "longvideobench")
    # v1: frames 0, 1 s (<= midpoint 1.0), the subtitle, frames 2, 3 s, the question.
    q1 = requests["q1"]
    assert [m["timestamps"] for m in q1["media"]] == [[0.0, 1.0], [2.0, 3.0]]
    assert q1["texts"][0] == "hello there"
    assert q1["texts"][1] == (
        "Question: What is said first?\nA. hi\nB. bye\nC. ok\nD. no\n"
        "Answer with the option's letter from the given choices directly."
    )
    # v2: "start"/"end"/"line" subtitles: midpoint 2.5 s.
    assert [m["timestamps"] for m in requests["q2"]["media"]] == [[0.0, 1.0, 2.0], [3.0]]


def test_egoschema_full_writes_the_kaggle_submission(tmp_path):
    case = build_egoschema(tmp_path / "data")
    case.benchmark = "egoschema_full"
    case.responses = {"uid0": "B", "uid1": "E", "uid2": "(C) choice 2"}
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    result = scores(output, "egoschema_full")
    assert result["metrics"]["accuracy"] == pytest.approx(50.0)  # uid1 has no public answer
    with open(result["submission"]) as f:
        assert list(csv.reader(f)) == [["q_uid", "answer"], ["uid0", "1"], ["uid1", "4"], ["uid2", "2"]]


def test_docvqa_test_split_writes_a_submission(tmp_path):
    data = tmp_path / "DocVQA"
    write_json(
        data / "test" / "test_v1.0.json",
        {
            "data": [
                {"questionId": 5, "question": "Title?", "image": "documents/a.png", "docId": 1},
            ]
        },
    )
    make_png(data / "test" / "documents" / "a.png")

    case = Case("docvqa_test", data, {"5": " Annual Report "}, {})
    output = tmp_path / "out"
    assert run_eval(case, output) == 0
    result = scores(output, "docvqa_test")
    assert json.loads(Path(result["submission"]).read_text()) == [{"questionId": 5, "answer": "Annual Report"}]


def test_judged_benchmarks_need_an_endpoint(tmp_path, capsys):
    (tmp_path / "anet").mkdir()
    case = Case("activitynet_qa", tmp_path / "anet", {}, {})
    assert run_eval(case, tmp_path / "out") == 2
    assert "--judge-endpoint" in capsys.readouterr().err


def test_missing_dataset_files_fail_clearly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_eval(Case("mvbench", tmp_path / "empty", {}, {}), tmp_path / "out") == 2
    assert "json/action_sequence.json" in capsys.readouterr().err


def test_unknown_benchmark_lists_the_known_ones(tmp_path, capsys):
    assert run_eval(Case("nope", tmp_path, {}, {}), tmp_path / "out") == 2
    assert "known: activitynet_qa" in capsys.readouterr().err
