"""Continuous batching: one scheduler thread owns the model and decodes every active sequence together.

Requests do not wait for each other. Each iteration of the scheduler

1. admits waiting sequences while there are free slots (and the prefill token budget allows): their
   visual features come from the :class:`~.cache.FeatureCache` or one vision-encoder call for all
   missing items (:mod:`.prompt_inputs`); prompts of similar length are prefilled together (left-padded) into a fresh KV
   cache, which then joins a running batch (both left-padded to a common length);
2. runs one decode step: one new token for every running sequence, in one forward pass. The running
   sequences form a few batches of similar length, each with its own KV cache, so that short chats
   are not padded to the length of a long video prompt (see :func:`.scheduler.choose_batch`); only
   attention runs batch by batch (see :func:`.kv_cache.batches_sdpa`);
3. hands every sequence its new text through the sequence's own ``emit`` callback (never a shared
   queue, so tokens cannot reach the wrong client) and drops finished or cancelled sequences from
   their batch (their rows of the KV cache are overwritten by the batch's last rows, and leading
   all-padding columns trimmed).

The model is touched by this thread only, except by live sessions (:mod:`.live_socket`): every scheduler
iteration runs holding :attr:`Engine.model_lock`, and a live session holds it for each of its steps, so two
forward passes never run at once. Decoding media and tokenising happen before :meth:`Engine.submit`, on
other threads.

Sampling (greedy, temperature, top-p, per-request seeds), stop strings and incremental detokenisation
are per sequence: a sequence's output does not depend on what else is in the batch (beyond float
round-off of padded batched matmuls).

The pieces: :mod:`.types` (what goes in and comes out), :mod:`.scheduler` (grouping and batching
policy), :mod:`.kv_cache` (the batches' KV caches and the one-pass attention), :mod:`.sampling` and
:mod:`.detokenizer` (tokens -> text, stop strings).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..model.llm_cache import cache_kwargs, output_cache
from ..model.token_layout import positions_from_mask
from .api_errors import unavailable
from .cache import FeatureCache, PrefixCache
from .detokenizer import IncrementalDetokenizer, StopMatcher
from .kv_cache import BATCHES_SDPA, BatchesCache, PerBatch, make_cache
from .prompt_inputs import PromptEmbedder
from .sampling import sample_tokens
from .scheduler import DECODE_MERGE_PADDING, DecodeBatch, SequenceState, choose_batch, length_groups
from .types import Emit, Event, Failed, Finished, PreparedPrompt, SamplingParams, SequenceHandle, TextDelta

logger = logging.getLogger(__name__)


@dataclass
class EngineStats:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    prefill_batches: int = 0
    decode_steps: int = 0
    generated_tokens: int = 0
    encoder_calls: int = 0
    encoded_items: int = 0
    max_running: int = 0


class Engine:
    """Continuous-batching generation engine around a ``VideoLLaMA3ForCausalLM``.

    Args:
        model: the model, in eval mode, on its device.
        tokenizer: used to detokenise outputs.
        max_batch_size: most sequences decoded together.
        max_prefill_tokens: prompt tokens admitted per scheduler iteration (at least one prompt is
            always admitted), bounding how long a burst of arrivals stalls running sequences.
        feature_cache: visual features by content hash; None disables it.
        prefix_cache: KV caches of prompt prefixes already prefilled; None disables it.
        eos_token_ids: token ids that end a sequence.
        max_model_len: positions the model supports; a sequence stops ("length") when it reaches it.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_batch_size: int = 32,
        max_prefill_tokens: int = 16384,
        feature_cache: FeatureCache | None = None,
        prefix_cache: PrefixCache | None = None,
        eos_token_ids: Iterable[int] = (),
        max_model_len: int | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = int(max_batch_size)
        self.max_prefill_tokens = int(max_prefill_tokens)
        self.feature_cache = feature_cache
        self.prefix_cache = prefix_cache
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        self.max_model_len = max_model_len or getattr(model.config, "max_position_embeddings", None)
        self.image_token_id = int(model.config.image_token_index)
        self.device = model.get_input_embeddings().weight.device
        # With one query per row (decode), the causal mask is just the padding mask; handed to SDPA in 4D,
        # transformers uses it as is instead of rebuilding it every step (other kernels want their own form).
        self._sdpa = getattr(model.config, "_attn_implementation", None) in ("sdpa", BATCHES_SDPA)
        # All running batches decode in one forward pass when attention can run batch by batch (see
        # kv_cache.batches_sdpa): SDPA and only full-attention layers. The model's attention implementation
        # is switched to BATCHES_SDPA for that, which is plain SDPA for every other forward pass.
        layer_types = getattr(model.config, "layer_types", None) or ["full_attention"]
        self.one_pass = self._sdpa and all(kind == "full_attention" for kind in layer_types)
        if self.one_pass:
            model.config._attn_implementation = BATCHES_SDPA
            self._batches_cache = BatchesCache(config=model.config)
        self.stats = EngineStats()
        self._embedder = PromptEmbedder(model, feature_cache, self.stats)

        # Held around every scheduler iteration (prefill, decode step) and by live sessions around each of their
        # model calls: one forward pass at a time on the shared model.
        self.model_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting: deque[SequenceState] = deque()
        # The running sequences, in a few batches of similar length (see :meth:`_place`).
        self._batches: list[DecodeBatch] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public API (any thread)
    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="videollama3-engine", daemon=True)
            self._thread.start()
        return self

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Stop the scheduler; sequences still waiting or running fail with a 503."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        # The loop fails what it held when it exits; this covers an engine that was never started.
        self._fail_all(unavailable("The server is shutting down.", code="shutting_down"))

    def submit(self, prompt: PreparedPrompt, params: SamplingParams, emit: Emit) -> SequenceHandle:
        """Queue one sequence. ``emit`` is called on the engine thread and must not block."""
        if params.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        handle = SequenceHandle(self._wake)
        generator = None
        if not params.greedy:
            # Every sampled sequence has its own generator: its draws do not depend on its batch mates.
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            generator = torch.Generator(device=self.device).manual_seed(int(seed) & (2**63 - 1))
        seq = SequenceState(
            prompt.with_cache_keys(self.image_token_id) if self.caching else prompt,
            params,
            emit,
            handle,
            IncrementalDetokenizer(self.tokenizer),
            StopMatcher(params.stop),
            generator,
        )
        with self._cond:
            if self._stopping:
                raise unavailable("The server is shutting down.", code="shutting_down")
            self._waiting.append(seq)
            self.stats.submitted += 1
            self._cond.notify_all()
        return handle

    @property
    def caching(self) -> bool:
        return self.feature_cache is not None or self.prefix_cache is not None

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return sum(len(batch.seqs) for batch in self._batches)

    @property
    def _running(self) -> list[SequenceState]:
        return [seq for batch in self._batches for seq in batch.seqs]

    @property
    def batches(self) -> tuple[DecodeBatch, ...]:
        """The running sequences, in a few batches of similar length (see :func:`.scheduler.choose_batch`)."""
        return tuple(self._batches)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the scheduler back (it stops before its next iteration): sequences submitted meanwhile
        are admitted together."""
        with self._cond:
            yield

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ scheduler loop (engine thread)
    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._stopping and not self._waiting and not self._running:
                        self._cond.wait()
                    if self._stopping:
                        break
                    admitted = self._admit()
                with self.model_lock:
                    # Never let the loop die: a failing step fails the sequences it touched, and serving goes on.
                    try:
                        self._drop_cancelled()
                        if admitted:
                            self._prefill(admitted)
                    except Exception as exc:
                        logger.exception("engine step failed; failing %d running sequences", self.num_running)
                        self._fail_running(exc)
                    self.decode_step()
        self._fail_all(unavailable("The server is shutting down.", code="shutting_down"))

    def prefill_waiting(self) -> int:
        """Admit the waiting sequences that fit and prefill them, on this thread; returns how many.

        With :meth:`decode_step`, this drives an engine that was not started (tests), one step at a
        time, as its scheduler loop would.
        """
        with self._cond:
            admitted = self._admit()
        if admitted:
            self._prefill(admitted)
        return len(admitted)

    def _admit(self) -> list[SequenceState]:
        """Pop waiting sequences that fit in the batch and the prefill budget (lock held)."""
        admitted: list[SequenceState] = []
        budget = self.max_prefill_tokens
        running = self.num_running
        while self._waiting and running + len(admitted) < self.max_batch_size:
            seq = self._waiting[0]
            if seq.handle.cancelled:
                self._waiting.popleft()
                self.stats.cancelled += 1
                continue
            if admitted and seq.prompt.num_tokens > budget:
                break
            budget -= seq.prompt.num_tokens
            admitted.append(self._waiting.popleft())
        return admitted

    def _drop_cancelled(self) -> None:
        for batch in self._batches:
            keep = [i for i, seq in enumerate(batch.seqs) if not seq.handle.cancelled]
            self.stats.cancelled += len(batch.seqs) - len(keep)
            self._keep(batch, keep)

    # ------------------------------------------------------------------ prefill
    def _prefill(self, seqs: list[SequenceState]) -> None:
        # A prompt whose first tokens' KV is cached runs only the rest through the model, so only the
        # rest needs embeddings (and the media whose tokens are all in the cached part, no features).
        cached = [
            self.prefix_cache.lookup(seq.prompt.prefix_hashes) if self._prefix_cacheable(seq) else None for seq in seqs
        ]
        starts = [0 if c is None else c[1] for c in cached]
        embeds: list[torch.Tensor | None] = [None] * len(seqs)
        try:
            embeds = self._embedder.embed(seqs, starts)
        except Exception:
            # Find the culprit(s): embed one by one, so one bad prompt does not fail its batch mates.
            for i, seq in enumerate(seqs):
                try:
                    embeds[i] = self._embedder.embed([seq], [starts[i]])[0]
                except Exception as exc:
                    self._fail(seq, exc)
        fresh, resumed = [], []
        for seq, e, c in zip(seqs, embeds, cached):
            if e is None:
                continue
            if c is None:
                fresh.append((seq, e))
            else:
                resumed.append((seq, e, c))
        # Resumed prompts run only the tokens after their cached prefixes, but their rows still hold the
        # whole prompt's KV, and the prefilled rows go on to decode together as one batch: a 3700-token
        # video prompt resumed beside 20 short chats would pad all of them to 3700 tokens for the rest of
        # their lives. So they are grouped by length too (they need a padding mask anyway), as loosely as
        # decode batches are (DECODE_MERGE_PADDING): prompts that would share one share the prefill.
        for group in length_groups(
            resumed, lambda it: it[2][1] + it[1].shape[0], exact_long=False, padding=DECODE_MERGE_PADDING
        ):
            group_seqs = [seq for seq, _, _ in group]
            self._run_prefill(functools.partial(self._prefill_after_prefix, group), group_seqs)
        for group in length_groups(fresh, lambda it: it[1].shape[0]):
            group_seqs = [seq for seq, _ in group]
            self._run_prefill(functools.partial(self._prefill_forward, [e for _, e in group], group_seqs), group_seqs)

    def _prefix_cacheable(self, seq: SequenceState) -> bool:
        return self.prefix_cache is not None and bool(seq.prompt.prefix_hashes)

    def _run_prefill(self, forward: Callable[[], DecodeBatch], seqs: list[SequenceState]) -> None:
        """Run one prefill; remember the prompts' KV for later prefixes; hand out the first tokens."""
        try:
            state = forward()
        except Exception as exc:
            logger.exception("prefill of %d sequences failed", len(seqs))
            for seq in seqs:
                self._fail(seq, exc)
            return
        self.stats.prefill_batches += 1
        for b, seq in enumerate(seqs):
            if self._prefix_cacheable(seq) and not self.prefix_cache.contains(seq.prompt.prefix_hashes):
                real = state.mask[b].bool()  # the row's tokens, wherever padding put them
                self.prefix_cache.store(
                    seq.prompt.prefix_hashes, [(k[b][:, real], v[b][:, real]) for k, v, *_ in state.cache]
                )
        batch = self._place(state)
        self._process_tokens(batch, seqs, state.last_tokens.tolist())

    def _prefill_forward(self, embeds: list[torch.Tensor], seqs: list[SequenceState]) -> DecodeBatch:
        """Prefill prompts together (left-padded); returns them as a batch with their first sampled tokens."""
        length = max(e.shape[0] for e in embeds)
        hidden = embeds[0].shape[-1]
        inputs = embeds[0].new_zeros(len(embeds), length, hidden)
        mask = torch.zeros(len(embeds), length, dtype=torch.long, device=self.device)
        for b, e in enumerate(embeds):
            inputs[b, length - e.shape[0] :] = e
            mask[b, length - e.shape[0] :] = 1
        positions = positions_from_mask(mask)
        out = self.model(
            inputs_embeds=inputs,
            attention_mask=mask,
            position_ids=positions,
            **cache_kwargs(make_cache(self.model.config)),
            use_cache=True,
            logits_to_keep=1,
        )
        tokens = sample_tokens(out.logits[:, -1], seqs)
        return DecodeBatch(list(seqs), output_cache(out), mask, tokens)

    def _prefill_after_prefix(
        self, items: list[tuple[SequenceState, torch.Tensor, tuple[list[tuple[torch.Tensor, torch.Tensor]], int]]]
    ) -> DecodeBatch:
        """Prefill prompts whose first tokens' KV is cached: only the rest of each runs, all in one pass.

        ``items``: (sequence, (R_i, H) embeddings of the rest, (cached per-layer KV, cached length)).
        Row i holds ``[padding][cached prefix][padding][rest of the prompt]``: the cached prefixes are
        left-padded to the longest, and so are the new parts; the attention mask skips both paddings and
        the positions continue each prefix.
        """
        prefix_len = max(length for _, _, (_, length) in items)
        rest_len = max(e.shape[0] for _, e, _ in items)
        batch, hidden = len(items), items[0][1].shape[-1]
        inputs = items[0][1].new_zeros(batch, rest_len, hidden)
        mask = torch.zeros(batch, prefix_len + rest_len, dtype=torch.long, device=self.device)
        positions = torch.zeros(batch, rest_len, dtype=torch.long, device=self.device)
        layers = []
        for layer, (k0, v0) in enumerate(items[0][2][0]):
            keys = k0.new_zeros(batch, k0.shape[0], prefix_len, k0.shape[-1])
            values = v0.new_zeros(batch, v0.shape[0], prefix_len, v0.shape[-1])
            for i, (_, _, (cached, length)) in enumerate(items):
                keys[i, :, prefix_len - length :] = cached[layer][0]
                values[i, :, prefix_len - length :] = cached[layer][1]
            layers.append((keys, values))
        for i, (_, e, (_, length)) in enumerate(items):
            rest = e.shape[0]
            inputs[i, rest_len - rest :] = e
            mask[i, prefix_len - length : prefix_len] = 1
            mask[i, prefix_len + rest_len - rest :] = 1
            positions[i, rest_len - rest :] = torch.arange(length, length + rest, device=self.device)
        if self._sdpa:
            # (B, 1, R, P + R): padding mask and causal among the new tokens, built here once instead of
            # by transformers' generic mask functions on every prefill.
            causal = torch.ones(rest_len, prefix_len + rest_len, dtype=torch.bool, device=self.device)
            attention_mask = mask.bool()[:, None, None, :] & causal.tril_(prefix_len)[None, None]
        else:
            attention_mask = mask
        out = self.model(
            inputs_embeds=inputs,
            attention_mask=attention_mask,
            position_ids=positions,
            **cache_kwargs(make_cache(self.model.config, layers, room=rest_len)),
            use_cache=True,
            logits_to_keep=1,
        )
        seqs = [seq for seq, _, _ in items]
        return DecodeBatch(seqs, output_cache(out), mask, sample_tokens(out.logits[:, -1], seqs))

    def _place(self, group: DecodeBatch) -> DecodeBatch:
        """Add freshly prefilled sequences to the running batch they fit best (see :func:`.scheduler.choose_batch`),
        or make them a batch of their own; returns that batch."""
        best = choose_batch(self._batches, group)
        if best is not None:
            best.extend(group)
            return best
        self._batches.append(group)
        return group

    # ------------------------------------------------------------------ decode
    def decode_step(self) -> None:
        """One decode step of every running sequence; a step that fails fails the sequences it ran.

        With ``one_pass`` all batches decode in one forward pass: rows are the batches' rows one batch after
        the other, each batch keeps its own KV cache and padding mask, and only attention runs batch by
        batch (see :func:`.kv_cache.batches_sdpa`). Otherwise (attention that cannot be split so) each
        batch gets a forward pass of its own.

        Both are kept because neither won clearly: ``benchmarks/bench_serving.py`` on the fixture model, 2
        shared CPU cores, 16 clients x 32 tokens, alternating runs of 25-30 s, generated tokens/s one pass
        vs a pass per batch: 1611 vs 1067, 847 vs 1029 (both under heavy load from other processes),
        1757 vs 1827 (quiet machine).
        """
        if self.one_pass and len(self._batches) > 1:
            passes = [list(self._batches)]
        else:
            passes = [[batch] for batch in self._batches]
        for batches in passes:
            try:
                self._decode(batches)
            except Exception as exc:
                logger.exception("decode step failed; failing %d sequences", sum(len(b.seqs) for b in batches))
                for batch in batches:
                    for seq in batch.seqs:
                        if not seq.done:
                            self._fail(seq, exc)
                    if batch in self._batches:
                        self._batches.remove(batch)

    def _decode(self, batches: list[DecodeBatch]) -> None:
        """One forward pass that decodes a token for every row of ``batches`` (several only with ``one_pass``)."""
        masks = [torch.cat([b.mask, b.mask.new_ones(len(b.seqs), 1)], dim=1) for b in batches]  # (B_i, T_i + 1)
        if len(batches) == 1:
            # The batch's own cache; with one query per row the causal mask is just the padding mask, which
            # transformers uses as is when handed to SDPA in 4D (other kernels want their own form).
            rows, cache = [(0, len(batches[0].seqs))], batches[0].cache
            attention_mask = masks[0].bool()[:, None, None, :] if self._sdpa else masks[0]
        else:
            rows, cache = self._batches_cache.bind(batches), self._batches_cache
            # Given as the per-layer-type mapping, the masks reach attention as they are.
            attention_mask = {"full_attention": PerBatch([m.bool()[:, None, None, :] for m in masks], rows)}
        seqs = [seq for b in batches for seq in b.seqs]
        out = self.model(
            input_ids=torch.cat([b.last_tokens for b in batches]).unsqueeze(1),  # (B, 1)
            attention_mask=attention_mask,
            position_ids=torch.cat([b.positions for b in batches]).unsqueeze(1),
            **cache_kwargs(cache),
            use_cache=True,
        )
        if len(batches) == 1:
            batches[0].cache = output_cache(out)
        tokens = sample_tokens(out.logits[:, -1], seqs)  # (B,)
        self.stats.decode_steps += 1
        token_list = tokens.tolist()
        for batch, mask, (start, end) in zip(batches, masks, rows):
            batch.mask = mask
            batch.positions = batch.positions + 1
            batch.last_tokens = tokens[start:end]
        for batch, (start, end) in zip(batches, rows):
            self._process_tokens(batch, seqs[start:end], token_list[start:end])

    # ------------------------------------------------------------------ per-sequence bookkeeping
    def _process_tokens(self, batch: DecodeBatch, seqs: Sequence[SequenceState], tokens: list[int]) -> None:
        """Give each sequence its new token; remove the sequences that finished from their batch."""
        for seq, token in zip(seqs, tokens):
            self._on_token(seq, int(token))
        self._keep(batch, [i for i, seq in enumerate(batch.seqs) if not seq.done])
        self.stats.max_running = max(self.stats.max_running, self.num_running)

    def _keep(self, batch: DecodeBatch, rows: list[int]) -> None:
        if rows:
            batch.keep(rows)
        elif batch in self._batches:
            self._batches.remove(batch)

    def _on_token(self, seq: SequenceState, token: int) -> None:
        seq.output_ids.append(token)
        self.stats.generated_tokens += 1
        if token in self.eos_token_ids:
            self._finish(seq, "stop")
            return
        if seq.params.stream or seq.params.stop:
            text = seq.detokenizer.push(token)
        else:
            text = seq.detokenizer.append(token)  # decoded all at once by _finish
        if text:
            visible, stopped = seq.stops.feed(text)
            if visible:
                self._emit(seq, TextDelta(visible))
            if stopped:
                self._finish(seq, "stop", flush=False)
                return
        total = seq.prompt.num_tokens + len(seq.output_ids)
        if len(seq.output_ids) >= seq.params.max_new_tokens or (self.max_model_len and total >= self.max_model_len):
            self._finish(seq, "length")

    def _finish(self, seq: SequenceState, reason: str, flush: bool = True) -> None:
        if flush:
            visible, stopped = seq.stops.feed(seq.detokenizer.flush(), final=True)
            if visible:
                self._emit(seq, TextDelta(visible))
            if stopped:
                reason = "stop"
        seq.done = True
        self.stats.completed += 1
        self._emit(seq, Finished(reason, len(seq.output_ids)))

    def _fail(self, seq: SequenceState, error: BaseException) -> None:
        seq.done = True
        self.stats.failed += 1
        self._emit(seq, Failed(error))

    def _emit(self, seq: SequenceState, event: Event) -> None:
        try:
            seq.emit(event)
        except Exception:  # the receiver is gone (e.g. its event loop closed): stop generating for it
            logger.debug("emit failed; cancelling the sequence", exc_info=True)
            seq.handle.cancelled = True

    def _fail_running(self, error: BaseException) -> None:
        for seq in self._running:
            if not seq.done:
                self._fail(seq, error)
        self._batches = []

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        for seq in waiting:
            self._fail(seq, error)
        self._fail_running(error)


def wait_idle(engine: Engine, timeout: float = 10.0) -> bool:
    """Wait until the engine has nothing waiting or running (for tests and orderly shutdowns)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not engine.num_waiting and not engine.num_running:
            return True
        time.sleep(0.01)
    return False
