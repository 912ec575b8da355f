"""``videollama3 data check`` and ``data preview``."""

from __future__ import annotations

import json
import shutil

from videollama3.cli import main


def write_annotations(folder, data):
    shutil.copytree(data / "images", folder / "images")
    (folder / "broken.mp4").write_bytes(b"\x00\x01 definitely not a video" * 20)
    good = {
        "image": "images/0000.png",
        "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A shape."}],
    }
    records = [
        good,
        {"image": "images/nope.png", "conversations": good["conversations"]},
        {
            "image": "images/0001.png",
            "conversations": [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "x"}],
        },
        {
            "video": ["broken.mp4"],
            "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "x"}],
        },
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]
    file = folder / "ann.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return file


def test_data_check_reports_every_bad_sample(tmp_path, tiny_world, capsys):
    file = write_annotations(tmp_path, tiny_world["data"])
    assert main(["data", "check", str(file), "--data-folder", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ann.jsonl:2 [missing_media]" in out
    assert "ann.jsonl:3 [tags]" in out
    assert "ann.jsonl:4 [corrupt_media]" in out
    assert "ann.jsonl:1 " not in out and "ann.jsonl:5 " not in out
    assert "5 samples, 3 unusable" in out and "skipped 3 of 5 samples" in out

    # With the processor: the exact training path, with token statistics.
    assert (
        main(
            [
                "data",
                "check",
                str(file),
                "--data-folder",
                str(tmp_path),
                "--processor",
                str(tiny_world["init"]),
                "--quiet",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "3 unusable" in out and "tokens mean" in out

    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(file.read_text().splitlines()[i] for i in (0, 4)) + "\n")
    assert main(["data", "check", str(clean), "--data-folder", str(tmp_path)]) == 0


def test_data_preview_marks_supervised_tokens(tiny_world, capsys):
    assert main(["data", "preview", str(tiny_world["vqa"]), "1", "--processor", str(tiny_world["init"])]) == 0
    out = capsys.readouterr().out
    assert "<image x24>" in out
    assert "<|im_start|>assistant\n[[" in out and "<|im_end|>]]\n" in out
    assert "[[Answer briefly." not in out  # the system turn is not supervised
