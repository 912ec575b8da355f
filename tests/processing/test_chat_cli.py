"""``videollama3 chat`` with the tiny fixture checkpoint: streamed greedy answers equal the reference's."""

from __future__ import annotations

import io
import json

import pytest
import torch
from vl3_media import FIXTURE_MODEL, FIXTURES

from videollama3.cli import main

pytest.importorskip("videollama3.model.modeling")


def _case(name: str) -> dict:
    return json.loads((FIXTURES / "cases" / name / "case.json").read_text())


def _chat(*args: str) -> list[str]:
    return ["chat", "--model", str(FIXTURE_MODEL), "--device", "cpu", "--max-new-tokens", "6", "--no-progress", *args]


@pytest.mark.parametrize(
    ("name", "media"),
    [
        ("video_fps1", ["--video", str(FIXTURES / "media" / "video_moving.mp4")]),
        ("image_single", ["--image", str(FIXTURES / "media" / "image_a.png")]),
    ],
)
def test_answers_like_the_reference(capsys, name, media):
    assert main(_chat(*media, "What is happening?")) == 0
    assert capsys.readouterr().out == _case(name)["generated_text"] + "\n"


def test_interactive_session_keeps_the_history(capsys, monkeypatch):
    from videollama3.model.modeling import VideoLLaMA3ForCausalLM
    from videollama3.processing import VideoLLaMA3Processor

    video = str(FIXTURES / "media" / "video_moving.mp4")
    monkeypatch.setattr("sys.stdin", io.StringIO("What is happening?\n\nWhat is the cat doing?\nexit\nignored\n"))
    assert main(_chat("--video", video)) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == _case("video_fps1")["generated_text"]

    processor = VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)
    model = VideoLLaMA3ForCausalLM.from_pretrained(FIXTURE_MODEL).eval()
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": {"video_path": video}},
                {"type": "text", "text": "What is happening?"},
            ],
        },
        {"role": "assistant", "content": first},
        {"role": "user", "content": "What is the cat doing?"},
    ]
    inputs = processor(conversation, add_system_prompt=True, add_generation_prompt=True)
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert second == processor.decode(ids[0], skip_special_tokens=True)


def test_without_model_a_missing_bundled_model_is_reported(capsys, tmp_path, monkeypatch):
    import videollama3.synthetic

    monkeypatch.setattr(videollama3.synthetic, "default_model_path", lambda name: tmp_path / "no-model")
    assert main(["chat", "Why?"]) == 2
    err = capsys.readouterr().err
    assert "bundled model is missing" in err and "no-model" in err and "--model" in err


def test_missing_media(capsys, tmp_path):
    assert main(_chat("--video", str(tmp_path / "absent.mp4"), "Why?")) == 2
    assert "absent.mp4" in capsys.readouterr().err
