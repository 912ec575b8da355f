"""The lmms-eval model class, with lmms-eval's real ``Instance`` when it is installed, else a stand-in."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from eval_helpers import FIXTURE_MODEL, make_mp4, make_png
from PIL import Image

from videollama3.evaluation.lmms_eval import MODEL_NAME, VideoLLaMA3Local, apply_stop_strings

try:
    from lmms_eval.api.instance import Instance as _Instance

    def make_instance(args, idx=0):
        return _Instance(
            request_type="generate_until",
            arguments=args,
            idx=idx,
            metadata={"task": args[4], "doc_id": args[3], "repeats": 1},
        )

    HAVE_LMMS_EVAL = True
except ImportError:  # lmms-eval is heavy and optional: the same shape, for the class's logic

    @dataclass
    class _Instance:
        arguments: tuple
        idx: int = 0
        resps: list = field(default_factory=list)

        @property
        def args(self):
            return self.arguments

    def make_instance(args, idx=0):
        return _Instance(args, idx)

    HAVE_LMMS_EVAL = False


class Recorder:
    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [self.answers.pop(0) for _ in requests]


@pytest.fixture()
def docs(tmp_path):
    video = make_mp4(tmp_path / "clip.mp4")
    image = Image.open(make_png(tmp_path / "a.png")).convert("RGB")
    return {
        "mvbench": {"test": [{"video": str(video)}]},
        "docvqa": {"val": [{"image": image}, {"images": [image, image]}]},
    }


def _requests(docs):
    return [
        make_instance(
            ("What happens?", {"until": ["\n\n"], "max_new_tokens": 16}, lambda d: [d["video"]], 0, "mvbench", "test")
        ),
        make_instance(("Title?", {"until": "</s>"}, lambda d: [d["image"]], 0, "docvqa", "val"), 1),
        make_instance(("Compare.", {}, lambda d: d["images"], 1, "docvqa", "val"), 2),
        make_instance(("No visual.", {}, None, 1, "docvqa", "val"), 3),
    ]


def test_generate_until_builds_conversations_and_applies_stop_strings(docs):
    recorder = Recorder(["a cat jumps\n\nmore", "Report</s>junk", "same", "ok"])
    model = VideoLLaMA3Local(predictor=recorder, batch_size=3)
    model.task_dict = docs
    assert model.generate_until(_requests(docs)) == ["a cat jumps", "Report", "same", "ok"]
    video, image, images, text = (r.conversation[0]["content"] for r in recorder.requests)
    assert video[0]["type"] == "video"
    assert (video[0]["video"]["fps"], video[0]["video"]["max_frames"]) == (1.0, 180)
    assert video[1] == {"type": "text", "text": "What happens?"}
    assert image[0]["type"] == "image" and isinstance(image[0]["image"], Image.Image)
    assert [item["type"] for item in images] == ["image", "image", "text"]
    assert text == [{"type": "text", "text": "No visual."}]
    assert [r.max_new_tokens for r in recorder.requests] == [16, 2048, 2048, 2048]


def test_loglikelihood_is_not_supported_and_says_so(docs):
    model = VideoLLaMA3Local(predictor=Recorder([]))
    request = make_instance(("ctx", " A", None, 0, "ai2d", "test"))
    with pytest.raises(NotImplementedError, match="log-likelihoods.*ai2d"):
        model.loglikelihood([request])
    with pytest.raises(NotImplementedError):
        model.generate_until_multi_round([request])


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    model = VideoLLaMA3Local(predictor=Recorder([]))
    assert (model.rank, model.world_size) == (1, 2)


def test_stop_strings():
    assert apply_stop_strings("A.\nBecause", ["\n"]) == "A."
    assert apply_stop_strings("abc", None) == "abc"
    assert apply_stop_strings("abc", "") == "abc"


def test_real_model_through_the_lmms_class(docs):
    model = VideoLLaMA3Local(pretrained=str(FIXTURE_MODEL), device="cpu", max_new_tokens=3, batch_size=2)
    model.task_dict = docs
    answers = model.generate_until(_requests(docs))
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)


@pytest.mark.skipif(not HAVE_LMMS_EVAL, reason="lmms-eval not installed")
def test_registers_with_lmms_eval():
    from lmms_eval.api.model import lmms
    from lmms_eval.models import get_model

    from videollama3.evaluation.lmms_eval import register

    assert issubclass(VideoLLaMA3Local, lmms)
    register()
    assert get_model(MODEL_NAME) is VideoLLaMA3Local
