"""The continuous-batching engine on the fixture model: same answers as ``generate``, isolation, caching."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import torch
from server_helpers import MEDIA

from videollama3.errors import InputError
from videollama3.serving.cache import PREFIX_BLOCK, FeatureCache, PrefixCache, item_key, prefix_hashes
from videollama3.serving.engine import (
    Engine,
    Failed,
    Finished,
    IncrementalDetokenizer,
    PreparedPrompt,
    SamplingParams,
    StopMatcher,
    TextDelta,
    wait_idle,
)

EOS = 485
IMAGE = 488

CONVERSATIONS = [
    [{"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_a.png")}}, "What?"]}],
    [
        {
            "role": "user",
            "content": [{"type": "video", "video": {"video_path": str(MEDIA / "video_moving.mp4")}}, "What happens?"],
        }
    ],
    [{"role": "user", "content": "Hello there, how are you?"}],
    [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(MEDIA / "video_static.mp4")}}, "Hm?"]}],
    [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": {"image_path": str(MEDIA / "image_b.png")}},
                {"type": "image", "image": {"image_path": str(MEDIA / "image_gray.png")}},
                "Compare.",
            ],
        }
    ],
]


@pytest.fixture(scope="module")
def processed(loaded_model):
    outs = []
    for conversation in CONVERSATIONS:
        outs.append(
            loaded_model.processor(
                conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt"
            )
        )
    return outs


def prepared(out) -> PreparedPrompt:
    ids = out["input_ids"][0]
    return PreparedPrompt(
        ids,
        out.get("pixel_values"),
        out.get("grid_sizes"),
        out.get("merge_sizes"),
        out.get("compression_mask"),
        visual_tokens=int((ids == IMAGE).sum()),
    )


@pytest.fixture()
def engine(loaded_model):
    engine = Engine(
        loaded_model.model,
        loaded_model.processor.tokenizer,
        max_batch_size=4,
        feature_cache=FeatureCache(64 << 20),
        prefix_cache=PrefixCache(64 << 20),
        eos_token_ids=[EOS],
    ).start()
    yield engine
    engine.shutdown()


class Collector:
    """Receives one sequence's events, as the HTTP layer does."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()

    def __call__(self, event):
        self.events.put(event)

    def result(self, timeout: float = 60) -> tuple[str, object]:
        text = ""
        while True:
            event = self.events.get(timeout=timeout)
            if isinstance(event, TextDelta):
                text += event.text
            else:
                return text, event


def test_staggered_arrivals_give_the_same_answers_as_generate(engine, loaded_model, processed):
    """Sequences join and leave a running batch; each answer equals the one ``generate`` gives alone."""
    tokenizer = loaded_model.processor.tokenizer
    lengths = [24, 9, 17, 30, 12]
    expected = []
    for out, n in zip(processed, lengths):
        with torch.inference_mode():
            ids = loaded_model.model.generate(**out, max_new_tokens=n, do_sample=False)[0].tolist()
        expected.append(tokenizer.decode([t for t in ids if t != EOS], skip_special_tokens=True))

    results: dict[int, tuple[str, object]] = {}

    def client(i: int) -> None:
        time.sleep(0.015 * i)  # arrivals while others decode
        collector = Collector()
        k = i % len(processed)
        engine.submit(prepared(processed[k]), SamplingParams(lengths[k]), collector)
        results[i] = collector.result()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (text, end) in results.items():
        assert isinstance(end, Finished), end
        assert text == expected[i % len(processed)], i
    assert engine.stats.max_running == 4  # the batch really filled up (max_batch_size)
    assert engine.stats.encoder_calls <= 4  # 5 distinct media: items are encoded once, then cached
    assert engine.stats.encoded_items == 5
    assert engine.prefix_cache.stats().hits >= 5  # repeated prompts reused their prefilled prefixes
    assert wait_idle(engine)


def test_seeded_sampling_does_not_depend_on_batch_mates(engine, processed):
    params = SamplingParams(16, temperature=0.9, top_p=0.8, seed=7)
    alone = Collector()
    engine.submit(prepared(processed[0]), params, alone)
    text_alone, _ = alone.result()
    collectors = [Collector() for _ in range(4)]
    for k, c in enumerate(collectors):
        p = params if k == 2 else SamplingParams(16, temperature=1.0, seed=k)
        engine.submit(prepared(processed[0 if k == 2 else k]), p, c)
    assert collectors[2].result()[0] == text_alone


def test_cancelled_sequences_leave_the_batch(engine, processed):
    long_one, short_one = Collector(), Collector()
    handle = engine.submit(prepared(processed[1]), SamplingParams(5000), long_one)
    assert isinstance(long_one.events.get(timeout=30), TextDelta)
    engine.submit(prepared(processed[2]), SamplingParams(4), short_one)
    handle.cancel()
    assert isinstance(short_one.result()[1], Finished)
    assert wait_idle(engine)
    assert engine.stats.cancelled == 1
    remaining = []
    while not long_one.events.empty():
        remaining.append(long_one.events.get())
    assert not any(isinstance(e, Finished) for e in remaining)


def test_a_bad_prompt_fails_alone(engine, processed):
    good, bad = Collector(), Collector()
    broken = prepared(processed[0])
    broken.input_ids = torch.cat([broken.input_ids, torch.tensor([IMAGE])])  # one placeholder too many
    engine.submit(broken, SamplingParams(4), bad)
    engine.submit(prepared(processed[2]), SamplingParams(4), good)
    _, end = bad.result()
    assert isinstance(end, Failed) and isinstance(end.error, InputError)
    assert "<image> tokens" in str(end.error)
    assert isinstance(good.result()[1], Finished)


def test_max_tokens_one_and_eos(engine, processed):
    one = Collector()
    engine.submit(prepared(processed[2]), SamplingParams(1), one)
    _, end = one.result()
    assert end.reason == "length" and end.completion_tokens == 1


def test_submit_after_shutdown_is_refused(loaded_model, processed):
    engine = Engine(loaded_model.model, loaded_model.processor.tokenizer).start()
    engine.shutdown()
    from videollama3.serving.errors import APIError

    with pytest.raises(APIError) as info:
        engine.submit(prepared(processed[2]), SamplingParams(2), Collector())
    assert info.value.status == 503


def reference(loaded_model, inputs: dict, n: int) -> str:
    with torch.inference_mode():
        ids = loaded_model.model.generate(**inputs, max_new_tokens=n, do_sample=False)[0].tolist()
    return loaded_model.processor.tokenizer.decode([t for t in ids if t != EOS], skip_special_tokens=True)


def test_next_turn_reuses_the_prefilled_prefix(engine, loaded_model):
    """Turn 2 of a chat starts with turn 1's prompt: only its new tokens are prefilled, same answer."""
    turn1 = [
        {
            "role": "user",
            "content": [{"type": "video", "video": {"video_path": str(MEDIA / "video_moving.mp4")}}, "Hi?"],
        }
    ]
    turn2 = turn1 + [{"role": "assistant", "content": "A square."}, {"role": "user", "content": "Which colour?"}]
    outs = [
        loaded_model.processor(conversation=c, add_system_prompt=True, add_generation_prompt=True)
        for c in (turn1, turn2)
    ]
    first = Collector()
    engine.submit(prepared(outs[0]), SamplingParams(8), first)
    first.result()
    reused = engine.prefix_cache.stats().reused_tokens
    second = Collector()
    engine.submit(prepared(outs[1]), SamplingParams(8), second)
    text, _ = second.result()
    assert text == reference(loaded_model, outs[1], 8)
    n1 = outs[0]["input_ids"].shape[1]
    assert engine.prefix_cache.stats().reused_tokens - reused == (n1 - 1) // PREFIX_BLOCK * PREFIX_BLOCK


def test_several_resumed_prompts_prefill_together(loaded_model, processed):
    """Next turns with cached prefixes of different lengths, admitted together: one pass, right answers."""
    engine = Engine(
        loaded_model.model, loaded_model.processor.tokenizer, prefix_cache=PrefixCache(64 << 20), eos_token_ids=[EOS]
    ).start()
    try:
        firsts = [CONVERSATIONS[0], CONVERSATIONS[1], CONVERSATIONS[2]]
        for conversation in firsts:
            c = Collector()
            out = loaded_model.processor(conversation=conversation, add_system_prompt=True, add_generation_prompt=True)
            engine.submit(prepared(out), SamplingParams(4), c)
            c.result()
        nexts = [
            loaded_model.processor(
                conversation=conv + [{"role": "assistant", "content": "Ok."}, {"role": "user", "content": q}],
                add_system_prompt=True,
                add_generation_prompt=True,
            )
            for conv, q in zip(firsts, ["Why?", "And what else happened there?", "Go on."])
        ]
        collectors = [Collector() for _ in nexts]
        before, hits = engine.stats.prefill_batches, engine.prefix_cache.stats().hits
        with engine._cond:  # hold the scheduler back so that all three are admitted in one iteration
            for out, c in zip(nexts, collectors):
                engine.submit(prepared(out), SamplingParams(8), c)
        texts = [c.result()[0] for c in collectors]
        assert engine.stats.prefill_batches == before + 1
        assert engine.prefix_cache.stats().hits == hits + 3
        for text, out in zip(texts, nexts):
            assert text == reference(loaded_model, out, 8)
    finally:
        engine.shutdown()


def test_same_tokens_different_pixels_do_not_share_a_prefix(engine, loaded_model, processed):
    """All <image> placeholders have one id: the prefix hash must include what the image is."""
    original = processed[0]
    changed = dict(original)
    changed["pixel_values"] = original["pixel_values"].flip(0).contiguous()
    a, b = prepared(original), prepared(changed)
    assert torch.equal(a.input_ids, b.input_ids)
    ha = a.with_cache_keys(IMAGE).prefix_hashes
    hb = b.with_cache_keys(IMAGE).prefix_hashes
    first_image_block = int((a.input_ids == IMAGE).nonzero()[0]) // PREFIX_BLOCK
    assert ha[:first_image_block] == hb[:first_image_block]  # the system prompt is shared
    assert all(x != y for x, y in zip(ha[first_image_block:], hb[first_image_block:]))
    for prompt in (a, b):
        c = Collector()
        engine.submit(prompt, SamplingParams(6), c)
        c.result()
    c = Collector()
    engine.submit(b, SamplingParams(6), c)
    assert c.result()[0] == reference(loaded_model, changed, 6)


def test_prefix_hashes_cover_whole_blocks_before_the_last_token():
    ids = torch.arange(100)
    assert len(prefix_hashes(ids, 488)) == 99 // PREFIX_BLOCK
    assert len(prefix_hashes(torch.arange(PREFIX_BLOCK + 1), 488)) == 1
    assert prefix_hashes(torch.arange(PREFIX_BLOCK), 488) == ()
    assert prefix_hashes(ids, 488)[:2] == prefix_hashes(torch.cat([ids[:70], ids[:5]]), 488)[:2]


def test_prefix_cache_shares_blocks_and_evicts_ends_first():
    block_bytes = 2 * (2 * 32 * 4 * 4)  # keys + values of one 32-token block, 2 heads x 4 dims, fp32
    cache = PrefixCache(max_bytes=3 * block_bytes, block=32)
    layer = [(torch.randn(2, 64, 4), torch.randn(2, 64, 4))]
    cache.store(("p", "a2"), layer)
    cache.store(("p", "b2"), layer)  # shares block "p": one new block
    assert cache.stats().blocks == 3
    keys, length = cache.lookup(("p", "a2"))[0][0][0], cache.lookup(("p", "a2"))[1]
    assert length == 64 and torch.equal(keys, layer[0][0])
    cache.store(("p", "c2"), layer)  # over budget: the least recently used block goes ("b2"), not "p"
    assert cache.lookup(("p", "b2"))[1] == 32
    assert cache.lookup(("q", "a2")) is None  # a prefix is matched from its first block
    assert cache.stats().evictions == 1


def test_incremental_detokenizer_matches_decoding_everything(loaded_model):
    tokenizer = loaded_model.processor.tokenizer
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = torch.randint(0, len(tokenizer), (40,), generator=generator).tolist()
        detokenizer = IncrementalDetokenizer(tokenizer)
        text = "".join(detokenizer.push(i) for i in ids) + detokenizer.flush()
        assert text == tokenizer.decode(ids, skip_special_tokens=True)


def test_stop_matcher_holds_back_possible_starts():
    matcher = StopMatcher(["END", "xyz"])
    assert matcher.feed("abc E") == ("abc ", False)  # "E" may start "END"
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("Dless") == ("", True)
    matcher = StopMatcher(["END"])
    assert matcher.feed("an E") == ("an ", False)
    assert matcher.feed("lephant") == ("Elephant", False)
    assert matcher.feed("x EN", final=True) == ("x EN", False)
    assert StopMatcher([]).feed("anything") == ("anything", False)
    assert StopMatcher(["b", "abc"]).feed("xxabc") == ("xx", True)  # cut where the earliest match starts


def test_feature_cache_is_bounded_lru():
    cache = FeatureCache(max_bytes=3 * 400)
    tensors = {k: torch.zeros(100) for k in "abcd"}  # 400 bytes each
    for k in "abc":
        cache.put(k, tensors[k])
    assert cache.get("a") is tensors["a"]  # "a" is now the most recently used
    cache.put("d", tensors["d"])
    assert cache.get("b") is None and cache.get("a") is not None
    stats = cache.stats()
    assert stats.entries == 3 and stats.bytes == 1200 and stats.evictions == 1
    cache.put("huge", torch.zeros(1000))  # larger than the whole cache: not stored
    assert cache.get("huge") is None and len(cache) == 3


def test_item_key_depends_on_pixels_grid_and_merge():
    rows = torch.randn(16, 588)
    key = item_key(rows, (1, 4, 4), 1)
    assert key == item_key(rows.clone(), (1, 4, 4), 1)
    assert key != item_key(rows, (1, 4, 4), 2)
    assert key != item_key(rows, (1, 2, 8), 1)
    changed = rows.clone()
    changed[3, 5] += 1e-3
    assert key != item_key(changed, (1, 4, 4), 1)
