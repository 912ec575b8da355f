"""``videollama3 infer``: rows with text, images and videos, per-row errors, resuming, and 2 processes vs 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import REPO_ROOT, SCRIPTED, make_mp4, make_png

from parity_fixtures import FIXTURE_MODEL, FIXTURES

MODEL_ARGS = ["--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "3"]


def _ask(*media: dict, text: str = "What is shown?") -> list[dict]:
    return [{"role": "user", "content": [*media, {"type": "text", "text": text}]}]


def _image(path) -> dict:
    return {"type": "image", "image": {"image_path": str(path)}}


def _video(path) -> dict:
    return {"type": "video", "video": {"video_path": str(path), "fps": 1, "max_frames": 4}}


def _write_rows(path: Path, rows: list, *raw_lines: str) -> Path:
    """``rows`` as JSON lines, then ``raw_lines`` verbatim (malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) for row in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _infer(input_path: Path, output: Path, *extra: str) -> int:
    from videollama3.cli import main

    return main(["infer", "--input", str(input_path), "--output", str(output), "--no-progress", *extra])


def _scripted(tmp_path: Path, responses: dict) -> list[str]:
    """Arguments running the scripted predictor (answers by id; every request it sees is logged)."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(responses))
    return ["--model", str(script), "--predictor", SCRIPTED]


def _seen_ids(tmp_path: Path) -> list[str]:
    path = tmp_path / "script.seen.jsonl"
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.exists() else []


def _mixed_rows(folder: Path) -> list[dict]:
    """Text, image, video and image + video rows (media relative to ``folder`` and absolute), one sampled."""
    make_png(folder / "media" / "chart.png")
    make_mp4(folder / "media" / "clip.mp4")
    return [
        {"id": "text", "conversation": [{"role": "user", "content": "Say something."}]},
        {"id": "image", "conversation": _ask(_image("media/chart.png"))},
        {"id": 7, "conversation": _ask(_video("media/clip.mp4"), text="What moves?")},
        {"id": "both", "conversation": _ask(_image(FIXTURES / "media" / "image_a.png"), _video("media/clip.mp4"))},
        {"id": "short", "conversation": _ask(_image("media/chart.png")), "max_new_tokens": 1},
        {"id": "sampled", "conversation": _ask(_video("media/clip.mp4")), "do_sample": True, "temperature": 0.7},
    ]


# --------------------------------------------------------------------------------------------------
# The model on every kind of row
# --------------------------------------------------------------------------------------------------


def test_text_image_and_video_rows_are_answered_in_input_order_whatever_the_batch(tmp_path):
    requests = _write_rows(tmp_path / "data" / "requests.jsonl", _mixed_rows(tmp_path / "data"))
    batched, one_by_one = tmp_path / "batched.jsonl", tmp_path / "one_by_one.jsonl"
    assert _infer(requests, batched, *MODEL_ARGS, "--batch-size", "4") == 0
    rows = _read(batched)
    assert [row["id"] for row in rows] == ["text", "image", 7, "both", "short", "sampled"]
    assert all(isinstance(row.get("answer"), str) and "error" not in row for row in rows), rows
    # Greedy answers do not depend on the batch; the sampled row is seeded by its id, not its batch mates.
    assert _infer(requests, one_by_one, *MODEL_ARGS) == 0
    assert one_by_one.read_bytes() == batched.read_bytes()


def test_a_corrupt_video_fails_its_row_only(tmp_path):
    data = tmp_path / "data"
    make_png(data / "a.png")
    make_mp4(data / "good.mp4")
    (data / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    requests = _write_rows(
        data / "requests.jsonl",
        [
            {"id": "before", "conversation": _ask(_image("a.png"))},
            {"id": "corrupt", "conversation": _ask(_video("corrupt.mp4"))},
            {"id": "good", "conversation": _ask(_video("good.mp4"))},
            {"id": "missing", "conversation": _ask(_image("missing.png"))},
        ],
    )
    output = tmp_path / "answers.jsonl"
    assert _infer(requests, output, *MODEL_ARGS, "--batch-size", "4") == 0
    rows = {row["id"]: row for row in _read(output)}
    assert "answer" in rows["before"] and "answer" in rows["good"]  # batch mates of the bad rows
    assert rows["corrupt"]["error"].startswith("line 2: MediaError: ") and "corrupt.mp4" in rows["corrupt"]["error"]
    assert rows["missing"]["error"].startswith("line 4: ") and "missing.png" in rows["missing"]["error"]


# --------------------------------------------------------------------------------------------------
# Data parallel: torchrun, 2 CPU processes, gloo
# --------------------------------------------------------------------------------------------------


def test_two_processes_write_the_same_file_as_one(tmp_path):
    data = tmp_path / "data"
    rows = _mixed_rows(data)
    (data / "corrupt.mp4").write_bytes(b"not a video" * 50)
    rows.insert(2, {"id": "corrupt", "conversation": _ask(_video("corrupt.mp4"))})
    requests = _write_rows(data / "requests.jsonl", rows, '{"conversation": []}')
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert _infer(requests, one, *MODEL_ARGS, "--batch-size", "2") == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "videollama3", "infer", "--input", str(requests), "--output", str(two), "--no-progress"]
    command += [*MODEL_ARGS, "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert two.read_bytes() == one.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "one.jsonl", "two.jsonl"]  # no journals


# --------------------------------------------------------------------------------------------------
# Resuming (scripted answers: which rows ran is recorded)
# --------------------------------------------------------------------------------------------------


def _abcd(folder: Path) -> Path:
    return _write_rows(folder / "requests.jsonl", [{"id": name, "conversation": _ask()} for name in "abcd"])


def test_answered_rows_of_the_output_and_journals_are_kept_and_a_torn_line_is_redone(tmp_path):
    requests = _abcd(tmp_path)
    output = tmp_path / "answers.jsonl"
    # An earlier run: "a" answered, "b" failed; a crash left "c" in a journal and "d" half written.
    _write_rows(output, [{"id": "a", "answer": "kept a"}, {"id": "b", "error": "line 2: RuntimeError: out of memory"}])
    _write_rows(output.with_name("answers.jsonl.rank1"), [{"id": "c", "answer": "kept c"}], '{"id": "d", "answ')
    script = _scripted(tmp_path, {name: f"new {name}" for name in "abcd"})
    assert _infer(requests, output, *script) == 0
    assert _seen_ids(tmp_path) == ["b", "d"]  # error rows are retried, answered ones are not redone
    assert _read(output) == [
        {"id": "a", "answer": "kept a"},
        {"id": "b", "answer": "new b"},
        {"id": "c", "answer": "kept c"},
        {"id": "d", "answer": "new d"},
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["requests.jsonl", "answers.jsonl", "script.json", "script.seen.jsonl"]
    )


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    requests = _abcd(tmp_path)
    output = tmp_path / "answers.jsonl"
    answers = {name: f"answer {name}" for name in "abcd"}
    assert _infer(requests, output, *_scripted(tmp_path, {**answers, "c": {"interrupt": True}})) == 130
    assert not output.exists()
    assert _read(output.with_name("answers.jsonl.rank0")) == [
        {"id": "a", "answer": "answer a"},
        {"id": "b", "answer": "answer b"},
    ]

    (tmp_path / "script.seen.jsonl").unlink()
    assert _infer(requests, output, *_scripted(tmp_path, answers)) == 0
    assert _seen_ids(tmp_path) == ["c", "d"]
    assert _read(output) == [{"id": name, "answer": f"answer {name}"} for name in "abcd"]
    assert not output.with_name("answers.jsonl.rank0").exists()

    assert _infer(requests, output, *_scripted(tmp_path, {}), "--overwrite") == 0
    assert _read(output) == [{"id": name, "answer": ""} for name in "abcd"]


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_malformed_rows_are_error_rows_naming_their_line(tmp_path):
    requests = _write_rows(
        tmp_path / "requests.jsonl",
        [
            {"id": "ok", "conversation": _ask()},
            {"conversation": _ask()},
            {"id": ["x"], "conversation": _ask()},
            {"id": "no conversation"},
            {"id": "typo", "conversation": _ask(), "max_tokens": 5},
            {"id": "bad option", "conversation": _ask(), "do_sample": True, "temperature": 0},
            {"id": "bad conversation", "conversation": [{"role": "user"}]},
            [1, 2],
        ],
        "",  # blank lines are not rows
        '{"id": "torn", "conversation": [{"ro',
    )
    output = tmp_path / "answers.jsonl"
    assert _infer(requests, output, *_scripted(tmp_path, {"ok": "fine"}), "--batch-size", "8") == 0
    rows = _read(output)
    assert rows[0] == {"id": "ok", "answer": "fine"}
    assert rows[1] == {"id": None, "line": 2, "error": 'line 2: no "id"'}
    assert rows[2] == {"id": None, "line": 3, "error": "line 3: \"id\" must be a string or an integer, got ['x']"}
    assert rows[3] == {"id": "no conversation", "error": 'line 4: no "conversation"'}
    assert rows[4]["error"].startswith("line 5: unknown field(s) ['max_tokens']; known: ['id', 'conversation'")
    assert rows[5] == {"id": "bad option", "error": "line 6: temperature must be a number > 0, got 0"}
    assert rows[6]["id"] == "bad conversation" and rows[6]["error"].startswith("line 7: ")
    assert rows[7] == {"id": None, "line": 8, "error": "line 8: expected a JSON object, got list"}
    assert rows[8]["line"] == 10 and rows[8]["error"].startswith("line 10: not valid JSON")
    assert len(rows) == 9


def test_duplicate_ids_are_refused_before_anything_runs(tmp_path, capsys):
    rows = [{"id": name, "conversation": _ask()} for name in ["a", "b", "a", "c", 1, "b", 1]]
    requests = _write_rows(tmp_path / "requests.jsonl", rows)
    output = tmp_path / "answers.jsonl"
    assert _infer(requests, output, *_scripted(tmp_path, {})) == 2
    error = capsys.readouterr().err
    assert (
        'duplicate ids, every row needs its own: id "a" on lines 1, 3; id "b" on lines 2, 6; id 1 on lines 5, 7'
        in error
    )
    assert str(requests) in error
    assert not output.exists() and _seen_ids(tmp_path) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing input", "input file {input} not found"),
        ("empty input", "{input} holds no rows"),
        ("output is the input", "the output {input} is the input file"),
        ("output is a folder", "output {tmp} is a folder"),
        ("output is another file", "{output} is not an output of videollama3 infer (line 2 is not a JSON row"),
        ("output is a note", "{output} is not an output of videollama3 infer (line 1 is not a JSON row"),
        ("batch size", "batch_size must be a positive integer, got 0"),
        ("sampling option", "top_p must be a number in (0, 1], got 2.0"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, case, message):
    requests, output, extra = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl", []
    if case != "missing input":
        _write_rows(requests, [] if case == "empty input" else [{"id": "a", "conversation": _ask()}])
    if case == "output is the input":
        output = requests
    elif case == "output is a folder":
        output = tmp_path
    elif case == "output is a note":
        output.write_text("my notes\n")
    elif case == "output is another file":
        output.write_text('{"id": "a", "answer": "x"}\nnotes I keep\n{"id": "b", "answ')
    elif case == "batch size":
        extra = ["--batch-size", "0"]
    elif case == "sampling option":
        extra = ["--top-p", "2"]
    assert _infer(requests, output, *_scripted(tmp_path, {}), *extra) == 2
    error = capsys.readouterr().err
    assert error.startswith("videollama3 infer: error: ") and "Traceback" not in error
    assert message.format(input=requests, output=output, tmp=tmp_path) in error
