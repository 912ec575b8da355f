"""Live sessions (model/live.py) against one offline forward of the same conversation, built by the processor.

The offline side is what the official code does with a stream: the conversation's ``stream`` messages hold
one frame each (``{"type": "image", "timestamp": t}``, rendered by the processor's chat template), and the
frames are processed as ONE video item (the processor's sizing, video merge size, Differential Frame
Pruner across consecutive frames), each frame's ``<image>`` expanded to the tokens it keeps. One forward
over that sequence must give the live session's logits at every position (fp32, 1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import DynamicCache

from parity_fixtures import FIXTURE_MODEL, FIXTURES
from videollama3.errors import InputError, MediaError
from videollama3.model.live import shift_key_positions
from videollama3.model.llm_cache import cache_kwargs
from videollama3.processing import VideoLLaMA3Processor, load_video

MEDIA = FIXTURES / "media"
ATOL = 1e-4
TOKENS_PER_FRAME = 64  # small frames: fast, and several merged tokens per frame for the pruner
ANSWER_SLOT = "@@answer@@"


@pytest.fixture(scope="module")
def processor():
    return VideoLLaMA3Processor.from_pretrained(FIXTURE_MODEL)


def video_frames(name: str, fps: float = 1) -> tuple[list[np.ndarray], list[float]]:
    return load_video(MEDIA / name, fps=fps)


# ---------------------------------------------------------------------------------------------- offline side
def offline_inputs(processor, events, add_generation_prompt=False, prune=True) -> dict:
    """Processor inputs of the conversation ``events``: ("frame", image, t), ("user", text), ("assistant", text
    or the answer's token ids).

    An answer given as ids (what the model generated; the fixture model's random answers are not always
    valid UTF-8, so not writable as text) takes the place of its message's text in the rendered prompt.
    """
    conversation, frames, times, answers = [], [], [], []
    for kind, *rest in events:
        if kind == "frame":
            image, t = rest
            conversation.append({"role": "stream", "content": [{"type": "image", "image": image, "timestamp": t}]})
            frames.append(image)
            times.append(t)
        elif isinstance(rest[0], list):
            conversation.append({"role": kind, "content": ANSWER_SLOT})
            answers.append(rest[0])
        else:
            conversation.append({"role": kind, "content": rest[0]})
    prompt = processor.apply_chat_template(
        conversation, add_system_prompt=True, add_generation_prompt=add_generation_prompt
    )
    chunks = prompt.split(ANSWER_SLOT)
    ids = processor.tokenizer(chunks[0])["input_ids"]
    for answer, chunk in zip(answers, chunks[1:]):
        ids += answer + processor.tokenizer(chunk)["input_ids"]
    if not frames:
        return {"input_ids": torch.tensor([ids])}
    # The frames as one video item; a budget of TOKENS_PER_FRAME per frame gives every frame the live size.
    video = {"type": "video", "video": {"frames": frames, "timestamps": times}}
    visual = processor([{"role": "user", "content": [video]}], max_tokens=len(frames) * TOKENS_PER_FRAME, prune=prune)
    kept = iter(visual["compression_mask"].view(len(frames), -1).sum(1).tolist())
    image_id = processor.image_token_id
    expanded = [i for token in ids for i in ([token] * next(kept) if token == image_id else [token])]
    return {
        "input_ids": torch.tensor([expanded]),
        **{k: visual[k] for k in ("pixel_values", "grid_sizes", "merge_sizes", "compression_mask")},
    }


def offline_logits(model, processor, events, prune=True) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = offline_inputs(processor, events, prune=prune)
    with torch.no_grad():
        return inputs["input_ids"][0], model(**inputs).logits[0]  # (L,), (L, V)


def offline_answer(model, processor, events, max_new_tokens: int) -> list[int]:
    """Greedy answer ids of the offline pipeline (processor + generate) after ``events`` and an assistant
    header, without the stop token."""
    inputs = offline_inputs(processor, events, add_generation_prompt=True)
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)[0].tolist()
    stops = {processor.tokenizer.convert_tokens_to_ids("<|im_end|>"), processor.tokenizer.eos_token_id}
    return ids[: next((i for i, token in enumerate(ids) if token in stops), len(ids))]


def assert_same_sequence(session, model, processor, events, prune=True) -> float:
    """The live session's ids and logits at every position equal one offline forward of ``events``."""
    ids, logits = offline_logits(model, processor, events, prune)
    assert session.input_ids.tolist() == ids.tolist()
    live = torch.cat(session.logits)  # (L, V)
    assert live.shape == logits.shape
    torch.testing.assert_close(live, logits, atol=ATOL, rtol=0)
    max_diff = float((live - logits).abs().max())
    print(f"max |live - offline| logits over {len(ids)} positions: {max_diff:.2e}")
    return max_diff


def new_session(model, processor, **options):
    options = {"autonomous": False, **options}
    return model.live(processor, tokens_per_frame=TOKENS_PER_FRAME, keep_logits=True, **options)


# ---------------------------------------------------------------------------------------------- exactness
def test_image_then_question(fixture_model, processor):
    image = Image.open(MEDIA / "image_a.png")
    events = [("frame", image, 0.0), ("user", "What is in the picture?")]
    answer = offline_answer(fixture_model, processor, events, max_new_tokens=6)

    session = new_session(fixture_model, processor)
    result = session.add_frame(image, 0.0)
    assert result.kept_tokens == result.total_tokens > 0  # the first frame keeps everything
    text = "".join(session.ask("What is in the picture?", max_new_tokens=6))
    assert text == processor.tokenizer.decode(answer, skip_special_tokens=True)

    assert_same_sequence(session, fixture_model, processor, events + [("assistant", answer)])
    assert session.transcript[-1] == {"role": "assistant", "text": text}


def test_frames_with_pruning(fixture_model, processor):
    frames, times = video_frames("video_static.mp4", fps=2)
    session = new_session(fixture_model, processor)
    results = [session.add_frame(frame, t) for frame, t in zip(frames, times)]
    assert results[0].kept_tokens == results[0].total_tokens
    assert any(r.kept_tokens < r.total_tokens for r in results[1:]), "the frozen video must lose tokens"

    events = [("frame", f, t) for f, t in zip(frames, times)]
    assert_same_sequence(session, fixture_model, processor, events)
    # The kept tokens are the processor's pruning of the whole video at once.
    per_frame = offline_inputs(processor, events)["compression_mask"].view(len(frames), -1).sum(1).tolist()
    assert [r.kept_tokens for r in results] == per_frame


def test_frames_without_pruning_keep_every_token(fixture_model, processor):
    frames, times = video_frames("video_static.mp4", fps=2)
    session = new_session(fixture_model, processor, prune=False)
    results = [session.add_frame(frame, t) for frame, t in zip(frames[:3], times[:3])]
    assert all(r.kept_tokens == r.total_tokens for r in results)
    events = [("frame", f, t) for f, t in zip(frames[:3], times[:3])]
    assert_same_sequence(session, fixture_model, processor, events, prune=False)


def test_question_mid_stream_then_more_frames(fixture_model, processor):
    frames, times = video_frames("video_moving.mp4")
    assert len(frames) >= 4
    session = new_session(fixture_model, processor)
    events = []
    for frame, t in zip(frames[:2], times[:2]):
        session.add_frame(frame, t)
        events.append(("frame", frame, t))
    for question, more in (("What moves?", slice(2, 4)), ("And now?", slice(0, 0))):
        events.append(("user", question))
        answer = offline_answer(fixture_model, processor, events, max_new_tokens=5)
        text = "".join(session.ask(question, max_new_tokens=5))
        assert text == processor.tokenizer.decode(answer, skip_special_tokens=True)
        events.append(("assistant", answer))
        for frame, t in zip(frames[more], times[more]):
            session.add_frame(frame, t)
            events.append(("frame", frame, t))
    assert_same_sequence(session, fixture_model, processor, events)


def test_respond_now_decision_and_autonomous_speech(fixture_model, processor):
    """The score is the offline logit gap after the frame; a session that always speaks lays its words out
    as an assistant message right after the frame, which is what the offline pipeline says there."""
    frames, times = video_frames("video_moving.mp4")
    tokenizer = processor.tokenizer
    im_start, stream_start = (tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|stream_start|>"))

    silent = new_session(fixture_model, processor)
    result = silent.add_frame(frames[0], times[0])
    _, logits = offline_logits(fixture_model, processor, [("frame", frames[0], times[0])])
    assert result.speak_score == pytest.approx(float(logits[-1, im_start] - logits[-1, stream_start]), abs=ATOL)
    assert not result.spoke and result.text == ""

    chatty = new_session(fixture_model, processor, autonomous=True, speak_margin=-math.inf, max_speech_tokens=4)
    events = []
    for frame, t in zip(frames[:2], times[:2]):
        result = chatty.add_frame(frame, t)
        events.append(("frame", frame, t))
        said = offline_answer(fixture_model, processor, events, max_new_tokens=4)
        assert result.spoke and result.text == tokenizer.decode(said, skip_special_tokens=True)
        events.append(("assistant", said))
    assert [m["role"] for m in chatty.transcript] == ["system", "stream", "assistant", "stream", "assistant"]
    assert_same_sequence(chatty, fixture_model, processor, events)


def test_unread_answer_is_closed_before_the_next_frame(fixture_model, processor):
    frames, times = video_frames("video_moving.mp4")
    session = new_session(fixture_model, processor)
    session.add_frame(frames[0], times[0])
    session.ask("What moves?", max_new_tokens=4)  # never read
    session.add_frame(frames[1], times[1])
    events = [
        ("frame", frames[0], times[0]),
        ("user", "What moves?"),
        ("assistant", []),
        ("frame", frames[1], times[1]),
    ]
    assert_same_sequence(session, fixture_model, processor, events)

    answer = session.ask("And now?", max_new_tokens=4)
    next(answer)  # read one piece only: the turn is cut there
    session.add_frame(frames[2], times[2])
    assert session.transcript[-2]["role"] == "assistant" and session.transcript[-1]["role"] == "stream"


# ---------------------------------------------------------------------------------------------- bounded memory
def test_cache_stays_under_max_cache_tokens(fixture_model, processor):
    """Many small frames (and a question now and then) under a 300-token bound: the cache never passes it."""
    rng = np.random.default_rng(0)
    limit = 300
    session = fixture_model.live(
        processor, tokens_per_frame=16, max_cache_tokens=limit, autonomous=True, max_speech_tokens=4
    )
    system_ids = session.input_ids.tolist()
    evicted = 0
    for i in range(60):
        frame = rng.integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
        evicted += session.add_frame(frame, 0.5 * i).evicted_tokens
        assert session.cache_tokens <= limit
        if i % 20 == 19:
            "".join(session.ask("What now?", max_new_tokens=3))
            assert session.cache_tokens <= limit
    assert evicted > limit  # the stream was several times the bound
    assert session.transcript[0]["role"] == "system"  # never evicted
    assert session.input_ids[: len(system_ids)].tolist() == system_ids
    assert [m["time"] for m in session.transcript if m["role"] == "stream"][-1] == 29.5  # the newest frame stays
    for layer in session._cache.layers:  # the KV cache holds exactly the transcript's tokens
        assert layer.keys.shape[2] == layer.values.shape[2] == session.cache_tokens == len(session.input_ids)
    assert torch.isfinite(session._last_logits).all()


def test_evicted_cache_keeps_contiguous_positions(fixture_model, processor):
    """After evictions the first layer's keys are those of the kept tokens at positions 0..L-1: that layer's
    keys depend only on each token and its position, so a fresh forward over the kept ids must give them."""
    session = fixture_model.live(processor, max_cache_tokens=120)
    for i in range(12):
        "".join(session.ask(f"Question number {i}?", max_new_tokens=3))
    assert session.cache_tokens <= 120 and session.transcript[1]["text"] != "Question number 0?"
    fresh = DynamicCache(config=fixture_model.config)
    with torch.no_grad():
        fixture_model(input_ids=session.input_ids[None], use_cache=True, **cache_kwargs(fresh))
    kept, recomputed = session._cache.layers[0], fresh.layers[0]
    torch.testing.assert_close(kept.keys, recomputed.keys, atol=1e-5, rtol=0)
    torch.testing.assert_close(kept.values, recomputed.values, atol=1e-5, rtol=0)


def test_shifting_rotated_keys_equals_rotating_at_the_new_position(fixture_model):
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    rotary = fixture_model.model.rotary_emb
    head_dim = fixture_model.config.hidden_size // fixture_model.config.num_attention_heads
    raw = torch.randn(1, 2, 5, head_dim, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(100, 105)[None]

    def rotate(at):
        cos, sin = rotary(raw, at)
        return apply_rotary_pos_emb(raw, raw, cos, sin)[1]

    torch.testing.assert_close(shift_key_positions(rotate(positions), -37, rotary.inv_freq), rotate(positions - 37))


def test_too_small_cache_budget_is_refused(fixture_model, processor):
    session = fixture_model.live(processor, tokens_per_frame=16, max_cache_tokens=40, autonomous=False)
    with pytest.raises(InputError, match="max_cache_tokens=40 is too small"):
        session.add_frame(np.zeros((28, 28, 3), np.uint8), 0.0)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_frames_and_times_are_refused(fixture_model, processor):
    session = new_session(fixture_model, processor)
    session.add_frame(np.zeros((56, 56, 3), np.uint8), 1.0)
    with pytest.raises(MediaError, match="56x56"):
        session.add_frame(np.zeros((56, 84, 3), np.uint8), 2.0)
    with pytest.raises(InputError, match="increasing time"):
        session.add_frame(np.zeros((56, 56, 3), np.uint8), 1.0)
    with pytest.raises(InputError, match="finite number"):
        session.add_frame(np.zeros((56, 56, 3), np.uint8), float("nan"))
    with pytest.raises(MediaError, match="uint8"):
        session.add_frame(np.zeros((56, 56, 3), np.float32), 3.0)
    with pytest.raises(MediaError, match=r"\(H, W, 3\)"):
        session.add_frame(np.zeros((56, 56), np.uint8), 3.0)
    with pytest.raises(MediaError, match="PIL image"):
        session.add_frame("frame.png", 3.0)
    with pytest.raises(InputError, match="non-empty string"):
        session.ask("  ")
    with pytest.raises(InputError, match="max_new_tokens"):
        session.ask("Q", max_new_tokens=0)
    with pytest.raises(InputError, match="tokens_per_frame"):
        fixture_model.live(processor, tokens_per_frame=0)
    session.add_frame(np.zeros((56, 56, 3), np.uint8), 3.0)  # the refusals left the session usable
    assert [m["time"] for m in session.transcript if m["role"] == "stream"] == [1.0, 3.0]
