"""The continuous-batching engine on the fixture model: same answers as ``generate``, isolation, caching."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import torch
from server_helpers import MEDIA

from videollama3.errors import InputError
from videollama3.serving import scheduler
from videollama3.serving.cache import PREFIX_BLOCK, FeatureCache, PrefixCache, item_key, prefix_hashes
from videollama3.serving.detokenizer import IncrementalDetokenizer, StopMatcher, backend_decoder
from videollama3.serving.engine import Engine, wait_idle
from videollama3.serving.kv_cache import AppendLayer
from videollama3.serving.types import Failed, Finished, PreparedPrompt, SamplingParams, TextDelta

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
    # Sequences shared the batch (how many at once depends on timing) and never beyond max_batch_size.
    assert 2 <= engine.stats.max_running <= 4
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
    from videollama3.serving.api_errors import APIError

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


def test_several_resumed_prompts_prefill_together(loaded_model, processed, monkeypatch):
    """Next turns with cached prefixes of different lengths, admitted together: one pass, right answers."""
    # These prompts differ in length more than a prefill group normally allows (see the next test).
    monkeypatch.setattr(scheduler, "PREFILL_PADDING_SLACK", 100.0)
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
        with engine.paused():  # hold the scheduler back so that all three are admitted in one iteration
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


# --------------------------------------------------------------------------------------------------
# Batching internals, driven inline (no scheduler thread) so that the batch layout can be inspected
# --------------------------------------------------------------------------------------------------


def _run_inline(engine: Engine) -> None:
    """What the scheduler loop does, on this thread, until nothing is waiting or running."""
    with torch.inference_mode():
        while engine.num_waiting or engine.num_running:
            engine.prefill_waiting()
            engine.decode_step()


def _inline_engine(loaded_model, **kwargs) -> Engine:
    settings = dict(max_batch_size=8, prefix_cache=PrefixCache(64 << 20), eos_token_ids=[EOS])
    settings.update(kwargs)
    return Engine(loaded_model.model, loaded_model.processor.tokenizer, **settings)  # never started


def _process(loaded_model, conversation, **kwargs) -> dict:
    return loaded_model.processor(
        conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt", **kwargs
    )


def test_kv_rows_join_and_leave_in_place():
    """The batch KV layer: newcomers (shorter or longer) are left-padded, leavers replaced by the last rows."""

    def pad_left(x, length):
        return torch.cat([x.new_zeros(*x.shape[:2], length - x.shape[2], x.shape[3]), x], dim=2)

    layer = AppendLayer()
    ref = torch.randn(3, 2, 10, 4)
    layer.load(ref.clone(), -ref)
    for _ in range(100):  # decode steps, past the first buffer's spare columns
        column = torch.randn(3, 2, 1, 4)
        layer.update(column, -column)
        ref = torch.cat([ref, column], dim=2)
    assert torch.equal(layer.keys, ref) and torch.equal(layer.values, -ref)

    for n in (1, 1):
        buffer = layer.key_buffer
        shorter = torch.randn(1, 2, 7 * n, 4)
        layer.add_rows(shorter, -shorter)
        ref = torch.cat([ref, pad_left(shorter, 110)])
        assert torch.equal(layer.keys, ref) and torch.equal(layer.values, -ref)
    assert layer.key_buffer is buffer  # the first newcomer made spare rows; the second was just written in

    longer = torch.randn(2, 2, 150, 4)
    layer.add_rows(longer, -longer)
    ref = torch.cat([pad_left(ref, 150), longer])
    assert torch.equal(layer.keys, ref) and torch.equal(layer.values, -ref)

    buffer = layer.key_buffer
    layer.keep_rows([0, 6, 2, 4, 5], trim=30)  # rows 1 and 3 leave; row 6 moves into row 1's place
    ref = ref[[0, 6, 2, 4, 5]][:, :, 30:]
    assert torch.equal(layer.keys, ref) and torch.equal(layer.values, -ref)
    assert layer.key_buffer is buffer
    column = torch.randn(5, 2, 1, 4)
    layer.update(column, -column)
    ref = torch.cat([ref, column], dim=2)
    assert torch.equal(layer.keys, ref)

    many = torch.randn(40, 2, 20, 4)
    layer.add_rows(many, -many)
    ref = torch.cat([ref, pad_left(many, ref.shape[2])])
    layer.keep_rows([0, 44], trim=0)  # nearly everyone leaves: the buffers shrink (KV memory is precious)
    assert torch.equal(layer.keys, ref[[0, 44]]) and torch.equal(layer.values, -ref[[0, 44]])
    assert layer.key_buffer.shape[0] < 10


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "pass-per-batch"])
def test_staggered_sequences_of_mixed_lengths_match_generate(loaded_model, processed, one_pass):
    """Many joins and leaves (rows reordered as others finish) in batches of mixed length: each answer is generate's.

    Decoding all batches in one forward pass (attention batch by batch) or, where attention cannot be
    split (not SDPA, sliding windows), one pass per batch.
    """
    engine = _inline_engine(loaded_model, feature_cache=FeatureCache(64 << 20))
    assert engine.one_pass  # the fixture model uses SDPA
    engine.one_pass = one_pass
    long_image = [{"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_c.png")}}]}]
    prompts = [
        *processed[:3],
        _process(loaded_model, long_image + [{"role": "user", "content": "What?"}]),
        *processed[3:],
    ]
    lengths = [3, 17, 8, 25, 5, 12, 30, 2, 9, 21, 14]
    jobs = [(prompts[i % len(prompts)], n) for i, n in enumerate(lengths)]
    collectors = [Collector() for _ in jobs]
    most_batches = 0
    with torch.inference_mode():
        for step, ((out, n), collector) in enumerate(zip(jobs, collectors)):
            engine.submit(prepared(out), SamplingParams(n), collector)
            engine.prefill_waiting()
            for _ in range(step % 3 + 1):  # a few decode steps between arrivals
                engine.decode_step()
                most_batches = max(most_batches, len(engine.batches))
    _run_inline(engine)
    assert most_batches >= 2  # rows of different batches really decoded side by side
    for (out, n), collector in zip(jobs, collectors):
        text, end = collector.result(timeout=1)
        assert isinstance(end, Finished) and end.completion_tokens == n
        assert text == reference(loaded_model, out, n)


def test_long_and_short_prompts_decode_in_separate_batches(loaded_model):
    """Resumed prompts are prefilled and batched by length: a long image prompt does not pad the short chats."""
    engine = _inline_engine(loaded_model)
    long_image = [{"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_c.png")}}]}]
    short_image = [
        {"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_a.png")}}]}
    ]
    text_only = [{"role": "user", "content": "Hello there."}]
    for c in (long_image, short_image, text_only):  # fill the prefix cache
        engine.submit(
            prepared(_process(loaded_model, c + [{"role": "user", "content": "Hi."}])), SamplingParams(2), Collector()
        )
    _run_inline(engine)

    questions = [
        "What is it?",
        "Tell me a story about the sea.",
        "Why?",
        "Count to ten, slowly.",
        "And then?",
        "Go on.",
    ]
    nexts = [
        _process(loaded_model, c + [{"role": "user", "content": q}])
        for c, q in zip([long_image, short_image] + [text_only] * 4, questions)
    ]
    assert nexts[0]["input_ids"].shape[1] > 3000 > 1000 > nexts[1]["input_ids"].shape[1]
    collectors = [Collector() for _ in nexts]
    for out, collector in zip(nexts, collectors):
        engine.submit(prepared(out), SamplingParams(6), collector)
    hits = engine.prefix_cache.stats().hits
    with torch.inference_mode():
        engine.prefill_waiting()  # all admitted together
    assert engine.prefix_cache.stats().hits == hits + len(nexts)
    # The long prompt decodes alone (padding the 5 short ones to its length would cost more than a
    # forward pass); the short ones share a batch (a little padding costs less than one more pass).
    assert sorted(len(batch.seqs) for batch in engine.batches) == [1, 5]
    long_batch = next(batch for batch in engine.batches if len(batch.seqs) == 1)
    assert long_batch.seqs[0].prompt.num_tokens == nexts[0]["input_ids"].shape[1]
    assert max(batch.length for batch in engine.batches if batch is not long_batch) < 1000
    _run_inline(engine)
    for out, collector in zip(nexts, collectors):
        assert collector.result(timeout=1)[0] == reference(loaded_model, out, 6)


def test_resumed_prompt_with_new_media_after_the_cached_prefix(loaded_model):
    """Turn 2 adds an image: only the new part is embedded (with the new image's features), same answer."""
    engine = _inline_engine(loaded_model, feature_cache=FeatureCache(64 << 20))
    turn1 = [
        {"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_a.png")}}, "What?"]}
    ]
    turn2 = turn1 + [
        {"role": "assistant", "content": "A picture."},
        {
            "role": "user",
            "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_b.png")}}, "And this?"],
        },
    ]
    engine.submit(prepared(_process(loaded_model, turn1)), SamplingParams(3), Collector())
    _run_inline(engine)
    out = _process(loaded_model, turn2)
    collector = Collector()
    engine.submit(prepared(out), SamplingParams(8), collector)
    reused = engine.prefix_cache.stats().reused_tokens
    _run_inline(engine)
    assert engine.prefix_cache.stats().reused_tokens > reused  # turn 1's KV was reused...
    assert engine.stats.encoded_items == 2  # ...and the second image encoded
    assert collector.result(timeout=1)[0] == reference(loaded_model, out, 8)


def test_same_media_after_a_different_prefix_reuses_the_features(loaded_model):
    engine = _inline_engine(loaded_model, feature_cache=FeatureCache(64 << 20))
    conversation = [
        {"role": "user", "content": [{"type": "image", "image": {"image_path": str(MEDIA / "image_gray.png")}}, "Hm?"]}
    ]
    engine.submit(prepared(_process(loaded_model, conversation)), SamplingParams(2), Collector())
    _run_inline(engine)
    other = _process(loaded_model, [{"role": "system", "content": "Be brief."}, *conversation])
    collector = Collector()
    engine.submit(prepared(other), SamplingParams(6), collector)
    _run_inline(engine)
    assert engine.stats.encoder_calls == 1 and engine.feature_cache.stats().hits == 1
    assert collector.result(timeout=1)[0] == reference(loaded_model, other, 6)


def test_media_without_placeholders_fail_even_when_the_prefix_is_cached(loaded_model, processed):
    """The placeholder count is checked against the media even when no features are needed."""
    engine = _inline_engine(loaded_model, feature_cache=FeatureCache(64 << 20))
    good = prepared(processed[0])
    engine.submit(good, SamplingParams(2), Collector())
    _run_inline(engine)
    extra = prepared(processed[4])  # two more images, without placeholders in the prompt
    broken = PreparedPrompt(
        good.input_ids,
        torch.cat([good.pixel_values, extra.pixel_values]),
        torch.cat([good.grid_sizes, extra.grid_sizes]),
        torch.cat([good.merge_sizes, extra.merge_sizes]),
        torch.cat([good.compression_mask, extra.compression_mask]),
    ).with_cache_keys(IMAGE)
    assert broken.prefix_hashes == good.with_cache_keys(IMAGE).prefix_hashes  # the cached prefix matches
    collector = Collector()
    engine.submit(broken, SamplingParams(2), collector)
    hits = engine.prefix_cache.stats().hits
    _run_inline(engine)
    assert engine.prefix_cache.stats().hits == hits + 1
    _, end = collector.result(timeout=1)
    assert isinstance(end, Failed) and isinstance(end.error, InputError)


def test_fast_detokenizer_path_matches_the_tokenizer(loaded_model):
    tokenizer = loaded_model.processor.tokenizer
    assert backend_decoder(tokenizer) is not None  # the fixture's tokenizer takes the fast path
    generator = torch.Generator().manual_seed(1)
    vocab = loaded_model.model.config.vocab_size  # the model can emit ids the tokenizer does not know
    for _ in range(20):
        ids = torch.randint(0, vocab, (40,), generator=generator).tolist()
        for skip in (True, False):
            detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
            text = "".join(detokenizer.push(i) for i in ids) + detokenizer.flush()
            assert text == tokenizer.decode(ids, skip_special_tokens=skip)


def test_unstreamed_text_is_decoded_once_at_the_end(loaded_model, processed):
    """stream=False: one TextDelta with the same text as the streamed deltas; stop strings still apply."""
    engine = _inline_engine(loaded_model)
    collectors = {name: Collector() for name in ("streamed", "whole", "whole_with_stop")}
    engine.submit(prepared(processed[2]), SamplingParams(20), collectors["streamed"])
    engine.submit(prepared(processed[2]), SamplingParams(20, stream=False), collectors["whole"])
    _run_inline(engine)
    events = {name: [] for name in collectors}
    for name, collector in collectors.items():
        while not collector.events.empty():
            events[name].append(collector.events.get())
    deltas = {name: [e.text for e in evs if isinstance(e, TextDelta)] for name, evs in events.items()}
    text = "".join(deltas["streamed"])
    assert len(deltas["streamed"]) > 1 and deltas["whole"] == [text]
    assert text == reference(loaded_model, processed[2], 20)

    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip()
    engine.submit(prepared(processed[2]), SamplingParams(20, stop=(stop,), stream=False), collectors["whole_with_stop"])
    _run_inline(engine)
    cut, end = collectors["whole_with_stop"].result(timeout=1)
    assert cut == text[: text.index(stop)] and end.reason == "stop"
