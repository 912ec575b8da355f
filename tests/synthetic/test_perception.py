"""Perception pretraining: the labels say what the picture shows, and a few steps train the encoder only."""

from __future__ import annotations

import math

import pytest
import torch

from videollama3.synthetic import perception, world
from videollama3.synthetic.model import build_initial_model
from videollama3.synthetic.perception import HEADS, picture_labels


def test_labels_describe_the_picture():
    chart = world.sample_image_scene(0, 0, kind="chart")
    labels = picture_labels("chart", chart)
    values = chart.chart.values
    assert HEADS["tallest"][labels["tallest"]] == chart.chart.labels[values.index(max(values))]
    assert labels["max_value"] == max(values) and labels["min_value"] == min(values)
    assert labels["shape"] == 0 and labels["word"] == 0

    count = world.sample_image_scene(0, 1, kind="count")
    labels = picture_labels("count", count)
    assert labels["count"] == len(count.shapes) and HEADS["shape"][labels["shape"]] == count.shapes[0].shape

    text = world.sample_image_scene(0, 2, kind="text")
    labels = picture_labels("text", text)
    assert HEADS["word"][labels["word"]] == text.text.word and HEADS["colour"][labels["colour"]] == text.text.colour

    video = world.sample_video_scene(0, 3)
    for t in range(video.duration):
        state = video.state_at(t + 0.875)
        labels = picture_labels("frame", state)
        assert labels["count"] == int(state[0].visible)
        if state[0].visible:
            assert HEADS["colour"][labels["colour"]] == state[0].colour


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pretraining_trains_the_encoder_only(tmp_path, tiny_size, precision):
    folder = build_initial_model(tmp_path / "random", tiny_size, seed=0, corpus_scale=0.02)
    from videollama3 import VideoLLaMA3ForCausalLM, VideoLLaMA3Processor

    model = VideoLLaMA3ForCausalLM.from_pretrained(folder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    processor = VideoLLaMA3Processor.from_pretrained(folder)
    accuracy = perception.pretrain_encoder(model, processor, steps=3, batch_size=4, precision=precision)
    assert set(accuracy) == set(HEADS)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.vision_encoder.") for k in changed)
    assert all(v.dtype == torch.float32 for v in after.values())  # bf16 is autocast: the weights stay fp32


def test_pretraining_rejects_an_unknown_precision(tmp_path, tiny_size):
    folder = build_initial_model(tmp_path / "random", tiny_size, seed=0, corpus_scale=0.02)
    from videollama3 import VideoLLaMA3ForCausalLM, VideoLLaMA3Processor

    model = VideoLLaMA3ForCausalLM.from_pretrained(folder)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        perception.pretrain_encoder(model, VideoLLaMA3Processor.from_pretrained(folder), steps=1, precision="fp16")


def test_accuracy_counts_only_pictures_that_show_the_attribute():
    # Four tokens: two of pictures without a word (class 0), both "right"; two with one, one right.
    target = torch.tensor([0, 0, 3, 5])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 3, 2]), 6).float()
    assert perception.shown_accuracy(logits, target) == 50.0  # not 75: "none" is not reading
    assert math.isnan(perception.shown_accuracy(logits[:2], target[:2]))
