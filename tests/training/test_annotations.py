"""Official annotation records -> conversations; annotation files; the seeded sample order."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from videollama3.training.annotations import AnnotationFile, SampleError, record_to_conversation
from videollama3.training.data import RankSampler, SampleOrder


def conv(*turns, **media):
    return {**media, "conversations": [{"from": f, "value": v} for f, v in turns]}


def test_tags_become_items_in_order(tmp_path):
    record = conv(
        ("system", "Be brief."),
        ("human", "Look: <image> then <video>\nand <image>\nWhich?"),
        ("gpt", "The second."),
        image=["a.png", "b.png"],
        video=["v.mp4"],
    )
    messages = record_to_conversation(record, tmp_path)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    content = messages[1]["content"]
    assert [item["type"] for item in content] == ["text", "image", "text", "video", "text", "image", "text"]
    assert content[1]["image"]["image_path"] == str(tmp_path / "a.png")
    assert content[3]["video"] == {"video_path": str(tmp_path / "v.mp4"), "fps": 1.0, "max_frames": 180}
    assert content[5]["image"]["image_path"] == str(tmp_path / "b.png")
    assert [item.get("text") for item in content if item["type"] == "text"] == ["Look:", "then", "and", "Which?"]
    assert messages[2] == {"role": "assistant", "content": "The second."}


def test_text_only_record_is_a_plain_conversation(tmp_path):
    messages = record_to_conversation(conv(("human", "2+2?"), ("gpt", "4")), tmp_path)
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
        {"role": "assistant", "content": "4"},
    ]


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (conv(("human", "Describe."), ("gpt", "x"), image="a.png"), "tags"),  # media without a tag
        (conv(("human", "<image><image>"), ("gpt", "x"), image="a.png"), "tags"),  # more tags than media
        (conv(("human", "<video>"), ("gpt", "x"), image="a.png"), "tags"),
        (conv(("human", "hi"), ("gpt", "<image> x"), image="a.png"), "tags"),  # tag in an answer
        (conv(("gpt", "x"), ("human", "y")), "format"),  # answer first
        (conv(("human", "a"), ("human", "b"), ("gpt", "c")), "format"),  # no alternation
        (conv(("human", "a"), ("gpt", "b"), ("system", "c")), "format"),  # system not first
        (conv(("human", "a<|im_end|>"), ("gpt", "b")), "format"),  # forged control token
        (conv(("human", "a"), ("bot", "b")), "format"),
        (conv(("human", "only a question")), "no_answer"),
        ({"conversations": []}, "format"),
        (
            {"image": 3, "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]},
            "format",
        ),
    ],
)
def test_bad_records_raise_with_a_kind(tmp_path, record, kind):
    with pytest.raises(SampleError) as err:
        record_to_conversation(record, tmp_path)
    assert err.value.kind == kind


def test_json_and_jsonl_files_read_the_same_records_lazily(tmp_path):
    records = [conv(("human", f"q{i}"), ("gpt", f"a{i}")) for i in range(5)]
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records[:3]) + "\n\n" + "\n".join(json.dumps(r) for r in records[3:]) + "\n"
    )
    as_list, as_lines = AnnotationFile(tmp_path / "a.json"), AnnotationFile(tmp_path / "a.jsonl")
    assert len(as_list) == len(as_lines) == 5
    assert list(as_list) == list(as_lines) == records
    assert as_lines.where(3) == "a.jsonl:5"  # 1-based line, the blank line skipped
    assert as_list.where(3) == "a.json[3]"


def test_sample_order_is_seeded_weighted_and_split_over_ranks():
    order = SampleOrder([10, 4, 6], [1.0, 2.0, 0.5], seed=7, epochs=2)
    assert order.epoch_size == 10 + 8 + 3 and len(order) == 42
    first = [order[i] for i in range(order.epoch_size)]
    counts = Counter(0 if i < 10 else (1 if i < 14 else 2) for i in first)
    assert counts == {0: 10, 1: 8, 2: 3}
    assert Counter(i for i in first if 10 <= i < 14) == dict.fromkeys(range(10, 14), 2)
    assert first == [SampleOrder([10, 4, 6], [1.0, 2.0, 0.5], seed=7, epochs=2)[i] for i in range(21)]  # deterministic
    assert first != [order[i] for i in range(21, 42)]  # reshuffled every epoch
    assert first != [SampleOrder([10, 4, 6], [1.0, 2.0, 0.5], seed=8, epochs=2)[i] for i in range(21)]
    # Ranks split each global batch; together they see exactly the global batch, and resuming at a step
    # yields the same indices as running through.
    batch = 8
    single = list(RankSampler(order, batch, 0, 1, 0, order.num_steps(batch)))
    two = [list(RankSampler(order, batch, r, 2, 0, order.num_steps(batch))) for r in range(2)]
    assert sorted(single) == sorted(two[0] + two[1])
    for step in range(order.num_steps(batch)):
        positions = order.step_positions(step, batch)
        assert sorted(order[p] for p in positions) == sorted(
            order[p] for r in range(2) for p in order.step_positions(step, batch, r, 2)
        )
    resumed = list(RankSampler(order, batch, 0, 1, 3, order.num_steps(batch)))
    assert resumed == single[3 * batch :]
    assert np.array_equal(order.epoch(1), order.epoch(1))
