"""Streaming records (``"stream": true``): interleaving, the frame cap, the stream-message labels and the
negative sampling, validation, and one training step (docs/streaming.md)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from train_helpers import FIXTURE_MEDIA, FIXTURE_MODEL, one_stage_recipe

from videollama3.processing import load_video
from videollama3.training.annotations import SampleError
from videollama3.training.data import BadSample, Source, SupervisedDataset
from videollama3.training.labels import IGNORE_INDEX, ChatTokens
from videollama3.training.recipe import DataConfig, SourceConfig
from videollama3.training.streaming import (
    STREAM_MAX_FRAMES,
    StreamFrame,
    TimedMessage,
    balance_sample_types,
    build_stream_sample,
    interleave,
    parse_stream_record,
    sampling_generator,
    stream_message_labels,
)
from videollama3.training.validation import check_file

# video_static.mp4 sampled at 1 fps within [0, 3] s: frames at 0, 1 and 2 s (120x200 -> 112x196, 8x14 patches,
# 28 merged tokens per frame with merge size 2).
THREE_FRAMES = {
    "video": ["video_static.mp4"],
    "stream": True,
    "start_time": 0.0,
    "end_time": 3.0,
    "conversation": [
        {"role": "user", "content": "What?", "time": 1.0},
        {"role": "assistant", "content": "Yes.", "time": 2.0},
    ],
}


@pytest.fixture(scope="module")
def processor():
    from videollama3.processing import VideoLLaMA3Processor

    return VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL, use_token_compression=False)


def build(processor, record, seed=0, index=0, prune=False, turn_labels=False):
    return build_stream_sample(
        record,
        FIXTURE_MEDIA,
        processor,
        ChatTokens.from_tokenizer(processor.tokenizer),
        fps=1.0,
        max_frames=180,
        max_tokens=256,
        prune=prune,
        add_system_prompt=False,
        generator=sampling_generator(seed, index),
        turn_labels=turn_labels,
    )


def tokens_and_mask(processor, sample) -> list[tuple[str, bool]]:
    """(token text, supervised) per position; a run of visual tokens as one ("<image>xN", False) entry."""
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    image = processor.image_token_id
    out, i = [], 0
    while i < len(ids):
        if ids[i] == image:
            j = i
            while j < len(ids) and ids[j] == image:
                assert labels[j] == IGNORE_INDEX
                j += 1
            out.append((f"<image>x{j - i}", False))
            i = j
            continue
        assert labels[i] in (IGNORE_INDEX, ids[i])
        out.append((processor.tokenizer.decode([ids[i]]), labels[i] != IGNORE_INDEX))
        i += 1
    return out


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def frame(supervised_after: bool = True) -> list[tuple[str, bool]]:
    """One stream message on the fixture tokenizer ("stream" is 5 tokens there)."""
    header = [("<|stream_start|>", False), ("s", False), ("t", False), ("re", False), ("a", False), ("m", False)]
    return header + [
        ("\n", False),
        ("<image>x28", False),
        ("\n", supervised_after),
        ("<|stream_end|>", True),
        ("\n", False),
    ]


def test_three_frame_record_is_labelled_token_by_token(processor):
    sample = build(processor, THREE_FRAMES)
    assert sample.num_frames == 3 and sample.visual["grid_sizes"].tolist() == [[3, 8, 14]]
    user = [("<|im_start|>", False), ("u", False), ("s", False), ("er", False), ("\n", False)]
    user += [("W", False), ("hat", False), ("?", False), ("<|im_end|>", False), ("\n", False)]
    assistant = [("<|im_start|>", False), ("as", False), ("s", False), ("istant", False), ("\n", False)]
    assistant += [("Y", True), ("es", True), (".", True), ("<|im_end|>", True), ("\n", False)]
    # Frames at 0 s and 1 s come before the question at 1 s (a frame at the message's time goes first), the
    # frame at 2 s before the answer at 2 s. Per frame, the "\n" after its visual tokens (the "stay silent"
    # continuation the model predicts after seeing the frame) and <|stream_end|> are supervised. The next
    # message's first token ("<|stream_start|>" = silent, "<|im_start|>" = speak) is not: the official training
    # code has that line commented out.
    expected = frame() + frame() + user + frame() + assistant
    assert tokens_and_mask(processor, sample) == expected


def test_negative_sampling_keeps_every_frame_target_when_they_are_one_type(processor):
    # Every frame is followed by "\n" (type 0): one type, so the balancing drops nothing, whatever the seed.
    labels = [build(processor, THREE_FRAMES, seed=seed, index=index).labels for seed, index in [(0, 0), (1, 5), (7, 3)]]
    assert all(torch.equal(labels[0], other) for other in labels[1:])
    assert int((labels[0] != IGNORE_INDEX).sum()) == 3 * 2 + 4


def with_first(message: list[tuple[str, bool]], supervised: bool = True) -> list[tuple[str, bool]]:
    """``message`` with its first token's label switched."""
    return [(message[0][0], supervised)] + message[1:]


def live_frame(time: str) -> list[tuple[str, bool]]:
    """One stream message in the inference copy's layout (``stream_turn_labels``), as a live session renders
    it: a ``Time {t}s: `` label, no newline after <|stream_end|>, nothing supervised."""
    label = [("T", False), ("ime", False), (" ", False)] + [(c, False) for c in time]
    label += [("s", False), (":", False), (" ", False)]
    return frame()[:7] + label + [("<image>x28", False), ("\n", False), ("<|stream_end|>", False)]


def test_turn_labels_supervise_the_respond_now_token_after_each_frame(processor):
    sample = build(processor, THREE_FRAMES, turn_labels=True)
    user = [("<|im_start|>", False), ("u", False), ("s", False), ("er", False), ("\n", False)]
    user += [("W", False), ("hat", False), ("?", False), ("<|im_end|>", False), ("\n", False)]
    assistant = [("<|im_start|>", False), ("as", False), ("s", False), ("istant", False), ("\n", False)]
    assistant += [("Y", True), ("es", True), (".", True), ("<|im_end|>", True), ("\n", False)]
    # The inference copy's layout and labels: frames with their time, nothing supervised inside them. After
    # frame 0 comes frame 1: its <|stream_start|> ("stay silent") is supervised. After frame 1 comes the user's
    # question: not supervised (the video cannot tell when the user asks). After frame 2 comes the answer: its
    # <|im_start|> ("speak") is supervised. One silent and one speaking position: the balancing keeps both.
    expected = live_frame("0.0") + with_first(live_frame("1.0")) + user + live_frame("2.0") + with_first(assistant)
    assert tokens_and_mask(processor, sample) == expected
    # Without the option, the official training layout and labels (test above).
    assert tokens_and_mask(processor, build(processor, THREE_FRAMES)) == frame() + frame() + user + frame() + assistant


def test_turn_labels_balance_silent_against_speaking_positions(processor):
    record = with_(conversation=[{"role": "assistant", "content": "Yes.", "time": 2.0}])
    assistant = [("<|im_start|>", True), ("as", False), ("s", False), ("istant", False), ("\n", False)]
    assistant += [("Y", True), ("es", True), (".", True), ("<|im_end|>", True), ("\n", False)]
    frames = [live_frame(t) for t in ("0.0", "1.0", "2.0")]
    kept_silent = set()
    for seed in range(6):
        marks = tokens_and_mask(processor, build(processor, record, seed=seed, turn_labels=True))
        # frame 0, frame 1 (its <|stream_start|> is a silent position), frame 2 (another), the answer (speaking)
        at_1, at_2 = len(frames[0]), len(frames[0]) + len(frames[1])
        silent = [marks[at_1][1], marks[at_2][1]]
        assert silent.count(True) == 1  # two silent positions, one speaking: one silent label is dropped
        kept_silent.add(silent.index(True))
        # The answer is untouched by the balancing of the turn positions.
        rest = marks[:at_1] + marks[at_1 + 1 : at_2] + marks[at_2 + 1 :]
        assert rest == frames[0] + frames[1][1:] + frames[2][1:] + assistant
        # Which one: randperm(2) of the sample's generator, its only draw.
        dropped = int(torch.randperm(2, generator=sampling_generator(seed, 0))[0])
        assert silent == [dropped == 1, dropped == 0]
    assert kept_silent == {0, 1}  # the seed decides which silent position keeps its label


# Frames at 1, 2 and 3 s of the video (start_time 1.0): the decision after the first is silent, after the
# second an assistant message (speak), after the third a user message (not supervised).
LIVE_RECORD = {
    **THREE_FRAMES,
    "start_time": 1.0,
    "end_time": 4.0,
    "conversation": [
        {"role": "assistant", "content": "It is still.", "time": 2.0},
        {"role": "user", "content": "And now?", "time": 3.0},
        {"role": "assistant", "content": "Still.", "time": 3.0},
    ],
}


def test_turn_labels_lay_a_sample_out_as_the_live_session_does(processor, fixture_model):
    sample = build(processor, LIVE_RECORD, turn_labels=True)
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    frames, times = load_video(FIXTURE_MEDIA / "video_static.mp4", fps=1.0, start_time=1.0, end_time=4.0)
    assert times == [1.0, 2.0, 3.0]  # the video's clock, as the messages' times

    # A live session fed the same frames at their video times holds the sample's first tokens, and the
    # position where it reads its decision after each frame is a supervised one.
    session = fixture_model.live(processor, tokens_per_frame=64, system_prompt=False, prune=False, autonomous=False)
    decisions = []
    for image, t in zip(frames[:2], times[:2]):
        session.add_frame(image, t)
        decisions.append(session.cache_tokens)
    assert ids[: decisions[-1]] == session.input_ids.tolist()
    tokenizer = processor.tokenizer
    assert [tokenizer.convert_ids_to_tokens(ids[d]) for d in decisions] == ["<|stream_start|>", "<|im_start|>"]
    assert all(labels[d] == ids[d] for d in decisions)

    # The whole sample is the processor's rendering of the equivalent offline conversation (which
    # tests/model/test_live.py checks a live session equals), one <image> per kept visual token.
    stream = [
        {"role": "stream", "content": [{"type": "image", "image": f, "timestamp": t}]} for f, t in zip(frames, times)
    ]
    conversation = [*stream[:2], {"role": "assistant", "content": "It is still."}, stream[2]]
    conversation += [{"role": "user", "content": "And now?"}, {"role": "assistant", "content": "Still."}]
    kept = iter(sample.visual["compression_mask"].view(3, -1).sum(1).tolist())
    image_id = processor.image_token_id
    offline = tokenizer(processor.apply_chat_template(conversation))["input_ids"]
    assert ids == [i for token in offline for i in ([token] * next(kept) if token == image_id else [token])]

    # Supervised: the token right after each <|stream_end|> but the one before the user's message, and the
    # assistant answers (their text and <|im_end|>).
    stream_end = tokenizer.convert_tokens_to_ids("<|stream_end|>")
    after_frames = [i + 1 for i, token in enumerate(ids) if token == stream_end]
    assert after_frames[:2] == decisions and tokenizer.decode(ids[after_frames[2] :]).startswith("<|im_start|>user")
    answers = [i for i, label in enumerate(labels) if label != IGNORE_INDEX and i not in decisions]
    assert tokenizer.decode([ids[i] for i in answers]) == "It is still.<|im_end|>Still.<|im_end|>"
    assert [i for i, label in enumerate(labels) if label != IGNORE_INDEX] == sorted(decisions + answers)
    assert all(labels[i] == ids[i] for i in answers)


def test_stream_message_types_the_token_after_the_frame():
    image, eos, stream_end = 9, 5, 7
    ids = torch.tensor([6, 1, 2, image, image, eos, stream_end, 2])
    labels, types = stream_message_labels(ids, image, eos)
    assert labels.tolist() == [-100, -100, -100, -100, -100, eos, stream_end, -100]
    assert types.tolist() == [-100, -100, -100, -100, -100, eos, -100, -100]
    ids = torch.tensor([6, 1, 2, image, 2, stream_end, 2])
    labels, types = stream_message_labels(ids, image, eos)
    assert labels.tolist() == [-100, -100, -100, -100, 2, stream_end, -100]
    assert types.tolist() == [-100, -100, -100, -100, 0, -100, -100]


def test_negative_sampling_balances_types_with_a_fixed_seed():
    labels = torch.tensor([10, 11, 12, 13, 14, 15, 16, 17])
    types = torch.tensor([-100, 0, 0, 0, 0, 485, 485, -100])
    # Type 0 has 4 positions (1..4), type 485 has 2: keep 2 of type 0. randperm(4) with manual_seed(0) is
    # [0, 1, 3, 2]; its first 4 - 2 entries (0, 1) index positions 1 and 2, which lose their label.
    out = balance_sample_types(labels, types, torch.Generator().manual_seed(0))
    assert out.tolist() == [10, -100, -100, 13, 14, 15, 16, 17]
    assert labels.tolist() == [10, 11, 12, 13, 14, 15, 16, 17]  # not modified in place
    one_type = balance_sample_types(labels, torch.tensor([-100, 0, 0, 0, -100, -100, -100, -100]), torch.Generator())
    assert torch.equal(one_type, labels)


def test_sampling_generator_depends_on_seed_and_index_only():
    def draw(seed, index):
        return torch.randperm(50, generator=sampling_generator(seed, index)).tolist()

    assert draw(0, 3) == draw(0, 3)
    assert draw(0, 3) != draw(0, 4) and draw(0, 3) != draw(1, 3)


# --------------------------------------------------------------------------------------------------
# Interleaving and the frame cap
# --------------------------------------------------------------------------------------------------


def message(time, role="user"):
    return TimedMessage(role, f"at {time}", time)


def test_frames_interleave_with_messages_by_time():
    messages = [message(0.0), message(1.5, "assistant"), message(1.5), message(4.0, "assistant")]
    sequence, shown = interleave(messages, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start_time=0.0)
    frames = [StreamFrame(k, float(k)) for k in range(5)]
    assert sequence == [
        frames[0],
        messages[0],
        frames[1],
        messages[1],
        messages[2],
        frames[2],
        frames[3],
        frames[4],
        messages[3],
    ]
    assert shown == 5  # the frames at 5 s and 6 s come after the last message: not shown


def test_frame_offsets_are_relative_to_start_time():
    sequence, shown = interleave([message(11.0)], [10.0, 11.0], start_time=9.5)
    assert sequence == [StreamFrame(0, 0.5), StreamFrame(1, 1.5), message(11.0)] and shown == 2


def test_messages_before_the_first_frame_come_first():
    sequence, shown = interleave([message(0.5), message(2.0, "assistant")], [1.0, 2.0], start_time=0.0)
    assert sequence == [message(0.5), StreamFrame(0, 1.0), StreamFrame(1, 2.0), message(2.0, "assistant")]


def test_frame_cap_keeps_400_frames_and_drops_messages_from_the_first_dropped_frame():
    times = [float(k) for k in range(STREAM_MAX_FRAMES + 50)]  # frame 400 is at 400 s
    messages = [message(10.0), message(399.5, "assistant"), message(400.0), message(420.0, "assistant")]
    sequence, shown = interleave(messages, times, start_time=0.0)
    assert shown == STREAM_MAX_FRAMES
    assert [m for m in sequence if isinstance(m, TimedMessage)] == messages[:2]
    assert sequence[-1] == messages[1] and sequence[-2] == StreamFrame(399, 399.0)


def test_no_cap_at_exactly_400_frames():
    times = [float(k) for k in range(STREAM_MAX_FRAMES)]
    sequence, shown = interleave([message(1000.0)], times, start_time=0.0)
    assert shown == STREAM_MAX_FRAMES and sequence[-1] == message(1000.0)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def with_(**changes):
    record = json.loads(json.dumps(THREE_FRAMES))
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def turns(*items):
    return [{"role": r, "content": "x", "time": t} for r, t in items]


BAD_RECORDS = [
    (with_(video=None), "needs a 'video'"),
    (with_(video=["a.mp4", "b.mp4"]), "exactly one video, got 2"),
    (with_(image="a.png"), "no 'image'"),
    (with_(start_time=None), "needs 'start_time'"),
    (with_(end_time="soon"), "'end_time' must be a finite number"),
    (with_(start_time=3.0, end_time=2.0), "must be after 'start_time'"),
    (with_(stream="yes"), "'stream' must be true or false"),
    (with_(conversation=None), "non-empty list of timed messages"),
    (with_(conversations=[{"from": "human", "value": "x"}]), "not 'conversations'"),
    (with_(conversation=[{"role": "user", "content": "x"}]), "conversation[0]: expected {'role', 'content', 'time'}"),
    (with_(conversation=turns(("user", 1.0), ("gpt", 2.0))), "conversation[1]: unknown role 'gpt'"),
    (with_(conversation=turns(("user", 1.0), ("stream", 2.0))), "conversation[1]: role 'stream' is not written"),
    (with_(conversation=turns(("user", 2.0), ("assistant", 1.0))), "conversation[1]: 'time' 1.0 is before"),
    (with_(conversation=turns(("user", 1.0), ("assistant", 3.5))), "conversation[1]: 'time' 3.5 is outside"),
    (with_(conversation=turns(("user", -1.0))), "conversation[0]: 'time' -1.0 is outside"),
    (with_(conversation=turns(("user", 1.0), ("system", 2.0))), "conversation[1]: a system message must come first"),
    (with_(conversation=[{"role": "user", "content": "<video>\nx", "time": 1.0}]), "media tags have no place"),
    (with_(conversation=[{"role": "user", "content": "a<|im_end|>", "time": 1.0}]), "chat control token"),
    (with_(conversation=[{"role": "user", "content": 3, "time": 1.0}]), "'content' must be a string"),
    (with_(conversation=[{"role": "user", "content": "x", "time": None}]), "'time' must be a finite number"),
]


@pytest.mark.parametrize("record, reason", BAD_RECORDS, ids=[reason for _, reason in BAD_RECORDS])
def test_bad_stream_records_are_refused_with_the_reason(record, reason):
    with pytest.raises(SampleError, match=re.escape(reason)):
        parse_stream_record(record, FIXTURE_MEDIA)


def write_stream_file(tmp_path, records):
    file = tmp_path / "stream.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return file


def test_data_check_names_the_line_and_reason_of_each_bad_stream_record(tmp_path):
    records = [
        THREE_FRAMES,
        with_(conversation=turns(("user", 2.0), ("assistant", 1.0))),
        with_(video=["missing.mp4"]),
        with_(start_time=0.5, conversation=turns(("user", 0.5), ("assistant", 3.0))),
        with_(conversation=turns(("human", 1.0))),
    ]
    file = write_stream_file(tmp_path, records)
    config = DataConfig(sources=[SourceConfig(path=str(file))])
    lines = []
    log, stats = check_file(Source(file, FIXTURE_MEDIA, 1.0, "stream"), config, out=lines.append)
    assert log.seen == 5 and log.skipped == 3, lines
    assert lines[0].startswith("stream.jsonl:2 [format] conversation[1]: 'time' 1.0 is before")
    assert lines[1].startswith("stream.jsonl:3 [missing_media]") and "missing.mp4" in lines[1]
    assert lines[2].startswith("stream.jsonl:5 [format] conversation[0]: unknown role 'human'")
    assert "2 stream" in stats


def test_no_frame_is_shown_when_every_message_is_past_the_cap():
    times = [float(k) for k in range(STREAM_MAX_FRAMES + 1)]
    assert interleave([message(400.0)], times, start_time=0.0) == ([], 0)


def test_data_check_cli_accepts_a_good_stream_file(tmp_path, capsys):
    from videollama3.cli import main

    file = write_stream_file(tmp_path, [THREE_FRAMES])
    assert main(["data", "check", str(file), "--data-folder", str(FIXTURE_MEDIA)]) == 0
    assert (
        main(["data", "check", str(file), "--data-folder", str(FIXTURE_MEDIA), "--processor", str(FIXTURE_MODEL)]) == 0
    )
    assert "1 samples, 0 unusable" in capsys.readouterr().out


def test_data_preview_marks_the_supervised_tokens_of_a_stream_record(tmp_path, capsys):
    from videollama3.cli import main

    file = write_stream_file(tmp_path, [THREE_FRAMES])
    args = ["data", "preview", str(file), "--data-folder", str(FIXTURE_MEDIA), "--processor", str(FIXTURE_MODEL)]
    assert main(args) == 0
    out = capsys.readouterr().out
    frame_text = "<|stream_start|>stream\n<image x28>[[\n<|stream_end|>]]\n"
    assert out.startswith(frame_text * 2 + "<|im_start|>user\nWhat?<|im_end|>\n" + frame_text)
    assert "<|im_start|>assistant\n[[Yes.<|im_end|>]]\n" in out and "10 supervised" in out


# --------------------------------------------------------------------------------------------------
# Dataset and trainer
# --------------------------------------------------------------------------------------------------


def test_dataset_serves_stream_records_deterministically(tmp_path, processor):
    file = write_stream_file(tmp_path, [THREE_FRAMES, with_(video=["missing.mp4"])])
    config = DataConfig(sources=[SourceConfig(path=str(file))], mm_max_length=256)
    dataset = SupervisedDataset([Source(file, FIXTURE_MEDIA, 1.0, "stream")], FIXTURE_MODEL, config, seed=3)
    first, again = dataset[0], dataset[0]
    assert torch.equal(first.labels, again.labels) and torch.equal(first.input_ids, again.input_ids)
    reference = build(processor, THREE_FRAMES, seed=3, index=0)
    assert torch.equal(first.input_ids, reference.input_ids) and torch.equal(first.labels, reference.labels)
    assert torch.equal(first.pixel_values, reference.visual["pixel_values"])
    assert first.pixel_values.shape[0] == 3 * 8 * 14 and first.num_targets == 10
    bad = dataset[1]
    assert isinstance(bad, BadSample) and bad.kind == "missing_media" and bad.where == "stream.jsonl:2"


def test_the_recipe_option_turns_on_turn_labels_in_the_dataset(tmp_path, processor):
    from videollama3.training.recipe import load_recipe

    assert load_recipe("tiny").stages[0].data.stream_turn_labels is False
    recipe = load_recipe("tiny", ["data.stream_turn_labels=true"])
    assert all(stage.data.stream_turn_labels is True for stage in recipe.stages)
    file = write_stream_file(tmp_path, [THREE_FRAMES])
    config = DataConfig(sources=[SourceConfig(path=str(file))], mm_max_length=256, stream_turn_labels=True)
    sample = SupervisedDataset([Source(file, FIXTURE_MEDIA, 1.0, "stream")], FIXTURE_MODEL, config, seed=3)[0]
    reference = build(processor, THREE_FRAMES, seed=3, index=0, turn_labels=True)
    assert torch.equal(sample.labels, reference.labels) and sample.num_targets == 4 + 2


def test_pre_sized_frames_match_the_processors_own_video_pixels(processor):
    # The frames are decoded already resized; the pixels must equal the processor's for the same frames.
    sample = build(processor, THREE_FRAMES)
    video = {"video_path": str(FIXTURE_MEDIA / "video_static.mp4"), "start_time": 0.0, "end_time": 3.0}
    out = processor(conversation=[{"role": "user", "content": [{"type": "video", "video": video}]}], max_tokens=256)
    assert torch.equal(out["grid_sizes"], sample.visual["grid_sizes"])
    assert torch.equal(out["pixel_values"], sample.visual["pixel_values"])


def test_pruned_frames_expand_to_their_kept_tokens(processor):
    sample = build(processor, THREE_FRAMES, prune=True)
    keep = sample.visual["compression_mask"]
    assert int((sample.input_ids == processor.image_token_id).sum()) == int(keep.sum())


def test_a_training_step_on_stream_records(tmp_path, tiny_world):
    from videollama3.training.runner import run_recipe

    conversation = [
        {"role": "user", "content": "Say when the dot stops.", "time": 0.5},
        {"role": "assistant", "content": "It is moving.", "time": 2.0},
        {"role": "assistant", "content": "Now.", "time": 3.0},
    ]
    records = [
        {
            "video": [f"videos/{i:04d}.mp4"],
            "stream": True,
            "start_time": 0.0,
            "end_time": 4.0,
            "conversation": conversation,
        }
        for i in range(4)
    ]
    file = write_stream_file(tmp_path, records)
    recipe = one_stage_recipe(tmp_path / "run", tiny_world["init"], [file], tiny_world["data"])
    (result,) = run_recipe(recipe)
    assert result.steps == 1 and result.skipped.skipped == 0, result.skipped.summary()
    metrics = [
        json.loads(line) for line in (recipe.stage_dir("stage") / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics[0]["samples"] == 4 and metrics[0]["targets"] > 0
    assert torch.isfinite(torch.tensor(result.losses)).all()
