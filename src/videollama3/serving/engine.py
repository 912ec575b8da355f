"""Continuous batching: one scheduler thread owns the model and decodes every active sequence together.

Requests do not wait for each other. Each iteration of the scheduler

1. admits waiting sequences while there are free slots (and the prefill token budget allows): their
   visual features come from the :class:`~.cache.FeatureCache` or one vision-encoder call for all
   missing items; prompts of similar length are prefilled together (left-padded) into a fresh KV
   cache, which then joins a running batch (both left-padded to a common length);
2. runs one decode step: one new token for every running sequence, in one forward pass. The running
   sequences form a few batches of similar length, each with its own KV cache, so that short chats
   are not padded to the length of a long video prompt (see :meth:`Engine._place`); only attention
   runs batch by batch (see :func:`_batches_sdpa`);
3. hands every sequence its new text through the sequence's own ``emit`` callback (never a shared
   queue, so tokens cannot reach the wrong client) and drops finished or cancelled sequences from
   their batch (their rows of the KV cache are overwritten by the batch's last rows, and leading
   all-padding columns trimmed).

The model is touched by this thread only, so no lock is held around forward passes. Decoding media and
tokenising happen before :meth:`Engine.submit`, on other threads.

Sampling (greedy, temperature, top-p, per-request seeds), stop strings and incremental detokenisation
are per sequence: a sequence's output does not depend on what else is in the batch (beyond float
round-off of padded batched matmuls).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..errors import InputError
from ..llm_cache import cache_kwargs, output_cache
from .cache import FeatureCache, PrefixCache, item_key, prefix_hashes
from .errors import unavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

GREEDY_TEMPERATURE = 1e-5  # temperatures at or below this are greedy decoding (OpenAI's temperature=0)
PREFILL_PADDING_SLACK = 1.25  # a prefill group may hold at most 25% padding (see _length_groups)...
PREFILL_MASKED_MAX_LENGTH = 1024  # ...and longer prompts are only grouped with prompts of their length
DECODE_MERGE_PADDING = 2048  # sequences join a decode batch if that adds at most this many padded positions...
DECODE_PADDING_SLACK = 1.5  # ...or leaves at most 50% padding (see Engine._place)...
MAX_DECODE_BATCHES = 4  # ...and are forced into one once there are this many


# --------------------------------------------------------------------------------------------------
# What a request hands the engine, and what it gets back
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one sequence and when to stop."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Whether text is emitted as it is generated. Without it (and without stop strings, which need the
    # text as it goes), the sequence is detokenised once, when it ends: one TextDelta with all the text.
    stream: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature <= GREEDY_TEMPERATURE


@dataclass
class PreparedPrompt:
    """One processed prompt (the processor's output for one conversation, batch dimension removed).

    Attributes:
        input_ids: (L,) token ids, pruned (one ``<image>`` id per kept visual token).
        pixel_values: (N, 588) patch rows of every item, or None for a text-only prompt.
        grid_sizes: (n_items, 3) [t, h, w] in patches; merge_sizes: (n_items,).
        compression_mask: (M,) bool, the Differential Frame Pruner's keep-mask over all visual tokens.
        item_keys: content hash of each item (see :func:`~.cache.item_key`).
        prefix_hashes: hashes of the prompt's block-aligned prefixes (see :func:`~.cache.prefix_hashes`).
        visual_tokens: number of visual tokens in ``input_ids``.

    ``item_keys`` and ``prefix_hashes`` are what the caches look up; :meth:`with_cache_keys` computes
    them (hashing every patch: call it off the model thread, as the server's request preparation does).
    """

    input_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None
    grid_sizes: torch.Tensor | None = None
    merge_sizes: torch.Tensor | None = None
    compression_mask: torch.Tensor | None = None
    item_keys: tuple[str, ...] = ()
    visual_tokens: int = 0
    prefix_hashes: tuple[str, ...] | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    def items(self) -> list[tuple[torch.Tensor, tuple[int, int, int], int]]:
        """(patch rows, grid, merge size) of each visual item, in order."""
        if self.pixel_values is None:
            return []
        grids = self.grid_sizes.reshape(-1, 3).tolist()
        merges = self.merge_sizes.reshape(-1).tolist()
        out, start = [], 0
        for (t, h, w), m in zip(grids, merges):
            n = t * h * w
            out.append((self.pixel_values[start : start + n], (t, h, w), m))
            start += n
        if start != self.pixel_values.shape[0]:
            raise InputError(
                f"grid_sizes {grids} describe {start} patches but pixel_values has {self.pixel_values.shape[0]} rows"
            )
        return out

    def kept_per_item(self) -> list[int]:
        """Visual tokens each item keeps in the prompt (after frame pruning)."""
        counts = [t * (h // m) * (w // m) for _, (t, h, w), m in self.items()]
        if self.compression_mask is None:
            return counts
        return [int(part.sum()) for part in self.compression_mask.reshape(-1).split(counts)]

    def with_cache_keys(self, image_token_id: int) -> PreparedPrompt:
        """This prompt with ``item_keys`` and ``prefix_hashes`` filled in."""
        if self.prefix_hashes is not None:
            return self
        keys = tuple(item_key(rows, grid, m) for rows, grid, m in self.items())
        hashes = prefix_hashes(self.input_ids, image_token_id, keys, self.kept_per_item() if keys else ())
        return dataclasses.replace(self, item_keys=keys, prefix_hashes=hashes)


@dataclass
class TextDelta:
    """New text of a sequence (already checked against its stop strings)."""

    text: str


@dataclass
class Finished:
    """The sequence ended: ``reason`` is "stop" (EOS or a stop string) or "length"."""

    reason: str
    completion_tokens: int


@dataclass
class Failed:
    """The sequence could not be completed; ``error`` says why."""

    error: BaseException


Event = TextDelta | Finished | Failed
Emit = Callable[[Event], None]


class SequenceHandle:
    """The submitter's side of a sequence: lets it cancel (client gone, timeout)."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._engine._wake()


# --------------------------------------------------------------------------------------------------
# Text: incremental detokenisation and stop strings
# --------------------------------------------------------------------------------------------------


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, O(1) tokens decoded per step.

    Decoding token by token is wrong for byte-level BPE (a character can span tokens) and for
    tokenizers that merge spaces across tokens, so each step decodes a short window of recent tokens
    and emits what it adds over the same window without the newest token; text ending in U+FFFD (an
    incomplete UTF-8 sequence) is held back until the next tokens complete it.
    """

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the decoding window
        self._read = 0  # tokens up to here have been emitted
        self._backend = _backend_decoder(tokenizer)

    def _decode(self, ids: list[int]) -> str:
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=self.skip_special_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        new_text = self._decode(self.ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return new_text[len(prefix_text) :]
        return ""

    def append(self, token_id: int) -> str:
        """Add a token without decoding anything yet (:meth:`flush` returns its text); returns ""."""
        self.ids.append(token_id)
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character is emitted as U+FFFD)."""
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        new_text = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return new_text[len(prefix_text) :]


def _backend_decoder(tokenizer):
    """The Rust ``tokenizers.Tokenizer`` behind a fast tokenizer when decoding with it gives the same text.

    Two decodes per generated token run on the model thread; ``PreTrainedTokenizerFast.decode`` wraps
    the Rust call in Python type checks (``to_py_obj`` walks the ids) costing ten times the decode
    itself. It adds nothing else unless ``clean_up_tokenization_spaces`` is set, so then the wrapper
    is kept.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if isinstance(backend, Tokenizer) and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return backend
    return None


class StopMatcher:
    """Finds the first stop string in streamed text, holding back text that may be the start of one.

    Text that could still turn out to begin a stop string is never emitted, so a client never sees
    part of a stop string, and the final text is the generated text cut before the first stop string,
    exactly as in the non-streamed response.
    """

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, text: str, final: bool = False) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was found)."""
        if not self.stops:
            return text, False
        pending = self._pending + text
        hits = [i for i in (pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._pending = ""
            return pending[: min(hits)], True
        hold = 0 if final else self._held_suffix(pending)
        self._pending = pending[len(pending) - hold :] if hold else ""
        return pending[: len(pending) - hold], False

    def _held_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        for n in range(min(len(text), max(len(s) for s in self.stops) - 1), 0, -1):
            suffix = text[-n:]
            if any(s.startswith(suffix) for s in self.stops):
                return n
        return 0


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------


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


@dataclass(eq=False)
class _Sequence:
    prompt: PreparedPrompt
    params: SamplingParams
    emit: Emit
    handle: SequenceHandle
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    done: bool = False


class _Batch:
    """Sequences decoded together: one KV cache, left-padded to a common length.

    Row b of every tensor belongs to ``seqs[b]``. ``last_tokens`` were sampled but are not in the cache
    yet: the next decode step feeds them at ``positions``.
    """

    def __init__(self, seqs: list[_Sequence], cache: DynamicCache, mask: torch.Tensor, last_tokens: torch.Tensor):
        self.seqs = seqs
        self.cache = cache
        self.mask = mask  # (B, T) 1 on real tokens
        self.positions = mask.sum(-1)  # (B,) position of the next token fed to the model
        self.last_tokens = last_tokens  # (B,)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def added_padding(self, other: _Batch) -> int:
        """Padded positions that merging ``other`` into this batch adds (over decoding the two apart)."""
        rows = len(self.seqs) + len(other.seqs)
        return max(self.length, other.length) * rows - self.length * len(self.seqs) - other.length * len(other.seqs)

    def padded_ratio(self, other: _Batch) -> float:
        """(positions) / (real tokens) of this batch and ``other`` merged."""
        rows = len(self.seqs) + len(other.seqs)
        return max(self.length, other.length) * rows / (int(self.mask.sum()) + int(other.mask.sum()))

    def extend(self, other: _Batch) -> None:
        """Append ``other``'s rows (all left-padded to the longer length); only the new rows' KV is copied."""
        length = max(self.length, other.length)
        for layer, new in zip(self.cache.layers, other.cache.layers):
            _add_rows(layer, new.keys, new.values)
        self.mask = torch.cat([_pad_left(self.mask, length, 1), _pad_left(other.mask, length, 1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.last_tokens = torch.cat([self.last_tokens, other.last_tokens])
        self.seqs = self.seqs + other.seqs

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (ascending), then drop leading columns that are padding in every remaining row.

        The rows that leave are filled with the last rows of the batch, so only the KV of rows that move
        is copied (and the order of ``seqs`` changes).
        """
        if len(rows) == len(self.seqs):
            return
        n, kept = len(rows), set(rows)
        order = list(range(n))  # new row i is old row order[i]
        holes = [i for i in range(n) if i not in kept]
        for hole, row in zip(holes, [r for r in rows if r >= n]):
            order[hole] = row
        index = torch.tensor(order, device=self.mask.device, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        real_columns = mask.any(0).nonzero()
        trim = int(real_columns[0]) if real_columns.numel() else 0
        for layer in self.cache.layers:
            _keep_rows(layer, order, trim)
        self.mask = mask[:, trim:]
        self.positions = self.positions.index_select(0, index)
        self.last_tokens = self.last_tokens.index_select(0, index)
        self.seqs = [self.seqs[i] for i in order]


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
        # _batches_sdpa): SDPA and only full-attention layers. The model's attention implementation is
        # switched to BATCHES_SDPA for that, which is plain SDPA for every other forward pass.
        layer_types = getattr(model.config, "layer_types", None) or ["full_attention"]
        self._one_pass = self._sdpa and all(kind == "full_attention" for kind in layer_types)
        if self._one_pass:
            model.config._attn_implementation = BATCHES_SDPA
            self._batches_cache = _BatchesCache(config=model.config)
        self.stats = EngineStats()

        self._cond = threading.Condition()
        self._waiting: deque[_Sequence] = deque()
        # The running sequences, in a few batches of similar length (see _place).
        self._batches: list[_Batch] = []
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
        handle = SequenceHandle(self)
        generator = None
        if not params.greedy:
            # Every sampled sequence has its own generator: its draws do not depend on its batch mates.
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            generator = torch.Generator(device=self.device).manual_seed(int(seed) & (2**63 - 1))
        seq = _Sequence(
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
    def _running(self) -> list[_Sequence]:
        return [seq for batch in self._batches for seq in batch.seqs]

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
                # Never let the loop die: a failing step fails the sequences it touched, and serving goes on.
                try:
                    self._drop_cancelled()
                    if admitted:
                        self._prefill(admitted)
                except Exception as exc:
                    logger.exception("engine step failed; failing %d running sequences", self.num_running)
                    self._fail_running(exc)
                self._decode()
        self._fail_all(unavailable("The server is shutting down.", code="shutting_down"))

    def _admit(self) -> list[_Sequence]:
        """Pop waiting sequences that fit in the batch and the prefill budget (lock held)."""
        admitted: list[_Sequence] = []
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
    def _prefill(self, seqs: list[_Sequence]) -> None:
        # A prompt whose first tokens' KV is cached runs only the rest through the model, so only the
        # rest needs embeddings (and the media whose tokens are all in the cached part, no features).
        cached = [
            self.prefix_cache.lookup(seq.prompt.prefix_hashes) if self._prefix_cacheable(seq) else None for seq in seqs
        ]
        starts = [0 if c is None else c[1] for c in cached]
        embeds: list[torch.Tensor | None] = [None] * len(seqs)
        try:
            embeds = self._prompt_embeddings(seqs, starts)
        except Exception:
            # Find the culprit(s): embed one by one, so one bad prompt does not fail its batch mates.
            for i, seq in enumerate(seqs):
                try:
                    embeds[i] = self._prompt_embeddings([seq], [starts[i]])[0]
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
        for group in _length_groups(
            resumed, lambda it: it[2][1] + it[1].shape[0], exact_long=False, padding=DECODE_MERGE_PADDING
        ):
            group_seqs = [seq for seq, _, _ in group]
            self._run_prefill(functools.partial(self._prefill_after_prefix, group), group_seqs)
        for group in _length_groups(fresh, lambda it: it[1].shape[0]):
            group_seqs = [seq for seq, _ in group]
            self._run_prefill(functools.partial(self._prefill_forward, [e for _, e in group], group_seqs), group_seqs)

    def _prefix_cacheable(self, seq: _Sequence) -> bool:
        return self.prefix_cache is not None and bool(seq.prompt.prefix_hashes)

    def _run_prefill(self, forward: Callable[[], _Batch], seqs: list[_Sequence]) -> None:
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

    def _prompt_embeddings(self, seqs: Sequence[_Sequence], starts: Sequence[int]) -> list[torch.Tensor]:
        """(L_i - start_i, H) input embeddings of each prompt from token ``start_i`` on, visual features in place
        of the ``<image>`` tokens.

        Features are only looked up (or encoded) for prompts with placeholders from ``start_i`` on. The
        number of placeholders is checked against the visual tokens the media keep either way (from the
        compression mask, or from the features when there is no mask).
        """
        prompt_ids = [seq.prompt.input_ids.reshape(-1) for seq in seqs]
        is_image = [ids == self.image_token_id for ids in prompt_ids]
        needs = [
            seq.prompt.pixel_values is not None and (bool(im[start:].any()) or seq.prompt.compression_mask is None)
            for seq, im, start in zip(seqs, is_image, starts)
        ]
        features = iter(self._visual_features([seq for seq, need in zip(seqs, needs) if need]))
        embed = self.model.get_input_embeddings()
        out = []
        for seq, ids, im, start, need in zip(seqs, prompt_ids, is_image, starts, needs):
            feats = next(features) if need else None
            n_placeholders = int(im.sum())
            n_visual = feats.shape[0] if feats is not None else sum(seq.prompt.kept_per_item())
            if n_placeholders != n_visual:
                raise InputError(
                    f"the prompt holds {n_placeholders} <image> tokens but its media give {n_visual} visual tokens "
                    "after frame pruning"
                )
            emb = embed(ids[start:].to(self.device))
            if feats is not None:
                here = im[start:].to(self.device)
                before = n_placeholders - int(here.sum())  # placeholders in the cached prefix
                emb[here] = feats[before:].to(emb.dtype)
            out.append(emb)
        return out

    def _visual_features(self, seqs: Sequence[_Sequence]) -> list[torch.Tensor | None]:
        """Kept visual features of each prompt, from the cache or one encoder call for all missing items."""
        found: dict[object, torch.Tensor] = {}
        missing: dict[object, tuple[torch.Tensor, tuple[int, int, int], int]] = {}
        per_seq_keys: list[list[object]] = []
        for seq in seqs:
            items = seq.prompt.items()
            cacheable = self.feature_cache is not None and len(seq.prompt.item_keys) == len(items)
            # Without content hashes an item is only shared with itself: key it by (sequence, index).
            keys: list[object] = list(seq.prompt.item_keys) if cacheable else [(id(seq), i) for i in range(len(items))]
            per_seq_keys.append(keys)
            for key, item in zip(keys, items):
                if key in found or key in missing:
                    continue
                cached = self.feature_cache.get(key) if cacheable else None
                if cached is not None:
                    found[key] = cached
                else:
                    missing[key] = item
        if missing:
            items = list(missing.values())
            pixel_values = torch.cat([rows for rows, _, _ in items]).to(self.device)
            grid_sizes = torch.tensor([grid for _, grid, _ in items], dtype=torch.long)
            merge_sizes = torch.tensor([m for _, _, m in items], dtype=torch.long)
            features = self.model.encode_images(pixel_values, grid_sizes, merge_sizes)
            self.stats.encoder_calls += 1
            self.stats.encoded_items += len(items)
            counts = [t * (h // m) * (w // m) for _, (t, h, w), m in items]
            for key, feats in zip(missing, features.split(counts)):
                found[key] = feats
                if self.feature_cache is not None and isinstance(key, str):
                    self.feature_cache.put(key, feats)

        out: list[torch.Tensor | None] = []
        for seq, keys in zip(seqs, per_seq_keys):
            prompt = seq.prompt
            if prompt.pixel_values is None:
                out.append(None)
                continue
            feats = torch.cat([found[key] for key in keys])
            mask = prompt.compression_mask
            if mask is None:
                mask = self.model.compute_compression_mask(
                    prompt.pixel_values.to(self.device), prompt.grid_sizes, prompt.merge_sizes
                )
            mask = mask.reshape(-1).to(feats.device, torch.bool)
            if mask.numel() != feats.shape[0]:
                raise InputError(
                    f"compression_mask has {mask.numel()} entries but the media give {feats.shape[0]} visual tokens"
                )
            out.append(feats[mask])
        return out

    def _prefill_forward(self, embeds: list[torch.Tensor], seqs: list[_Sequence]) -> _Batch:
        """Prefill prompts together (left-padded); returns them as a batch with their first sampled tokens."""
        length = max(e.shape[0] for e in embeds)
        hidden = embeds[0].shape[-1]
        inputs = embeds[0].new_zeros(len(embeds), length, hidden)
        mask = torch.zeros(len(embeds), length, dtype=torch.long, device=self.device)
        for b, e in enumerate(embeds):
            inputs[b, length - e.shape[0] :] = e
            mask[b, length - e.shape[0] :] = 1
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        out = self.model(
            inputs_embeds=inputs,
            attention_mask=mask,
            position_ids=positions,
            **cache_kwargs(_make_cache(self.model.config)),
            use_cache=True,
            logits_to_keep=1,
        )
        tokens = self._sample(out.logits[:, -1], seqs)
        return _Batch(list(seqs), output_cache(out), mask, tokens)

    def _prefill_after_prefix(
        self, items: list[tuple[_Sequence, torch.Tensor, tuple[list[tuple[torch.Tensor, torch.Tensor]], int]]]
    ) -> _Batch:
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
            **cache_kwargs(_make_cache(self.model.config, layers, room=rest_len)),
            use_cache=True,
            logits_to_keep=1,
        )
        seqs = [seq for seq, _, _ in items]
        return _Batch(seqs, output_cache(out), mask, self._sample(out.logits[:, -1], seqs))

    def _place(self, group: _Batch) -> _Batch:
        """Add freshly prefilled sequences to the running batch they fit best; returns that batch.

        Every row of a batch is padded to the batch's longest sequence, and each decode step costs
        about (rows x length) in attention and KV-cache traffic, so a batch of short chats should not
        carry a 4000-token video prompt. All batches decode in one forward pass (see :meth:`_decode_all`),
        but each costs an attention call per layer and step, about as much as attention over a couple of
        thousand padded positions (for the fixture model on a CPU; the fixed cost of a call weighs more
        on a GPU). So the group joins the batch where merging adds the fewest padded positions, if that
        is at most ``DECODE_MERGE_PADDING`` or leaves at most ``DECODE_PADDING_SLACK`` padding; otherwise
        it starts a batch of its own, up to ``MAX_DECODE_BATCHES`` batches, beyond which it joins the
        cheapest one anyway. (Without the one-pass decode, each batch costs a whole forward pass per
        step: the limit on batches keeps that bounded.)
        """
        best, best_added = None, None
        for batch in self._batches:
            added = batch.added_padding(group)
            if best_added is None or added < best_added:
                best, best_added = batch, added
        if best is not None and (
            best_added <= DECODE_MERGE_PADDING
            or best.padded_ratio(group) <= DECODE_PADDING_SLACK
            or len(self._batches) >= MAX_DECODE_BATCHES
        ):
            best.extend(group)
            return best
        self._batches.append(group)
        return group

    # ------------------------------------------------------------------ decode
    def _decode(self) -> None:
        """One decode step of every running sequence; a step that fails fails the sequences it ran."""
        if self._one_pass and len(self._batches) > 1:
            try:
                self._decode_all()
            except Exception as exc:
                logger.exception("decode step failed; failing %d running sequences", self.num_running)
                self._fail_running(exc)
            return
        for batch in list(self._batches):
            try:
                self._decode_step(batch)
            except Exception as exc:
                logger.exception("decode step failed; failing its %d sequences", len(batch.seqs))
                for seq in batch.seqs:
                    if not seq.done:
                        self._fail(seq, exc)
                self._batches.remove(batch)

    def _decode_step(self, batch: _Batch) -> None:
        seqs = list(batch.seqs)
        mask = torch.cat([batch.mask, batch.mask.new_ones(len(seqs), 1)], dim=1)
        out = self.model(
            input_ids=batch.last_tokens.unsqueeze(1),
            attention_mask=mask.bool()[:, None, None, :] if self._sdpa else mask,
            position_ids=batch.positions.unsqueeze(1),
            **cache_kwargs(batch.cache),
            use_cache=True,
        )
        batch.cache = output_cache(out)
        batch.mask = mask
        batch.positions = batch.positions + 1
        batch.last_tokens = self._sample(out.logits[:, -1], seqs)
        self.stats.decode_steps += 1
        self._process_tokens(batch, seqs, batch.last_tokens.tolist())

    def _decode_all(self) -> None:
        """One decode step of every running batch in a single forward pass (see :func:`_batches_sdpa`).

        Rows are the batches' rows one batch after the other; each batch keeps its own KV cache and
        padding mask, so a batch of short chats is not padded to the length of a long video prompt.
        """
        batches = list(self._batches)
        rows = self._batches_cache.bind(batches)
        masks = [torch.cat([b.mask, b.mask.new_ones(len(b.seqs), 1)], dim=1) for b in batches]  # (B_i, T_i + 1)
        seqs = [seq for b in batches for seq in b.seqs]
        out = self.model(
            input_ids=torch.cat([b.last_tokens for b in batches]).unsqueeze(1),  # (B, 1)
            # Given as the per-layer-type mapping, the masks reach attention as they are.
            attention_mask={"full_attention": _PerBatch([m.bool()[:, None, None, :] for m in masks], rows)},
            position_ids=torch.cat([b.positions for b in batches]).unsqueeze(1),
            **cache_kwargs(self._batches_cache),
            use_cache=True,
        )
        tokens = self._sample(out.logits[:, -1], seqs)  # (B,)
        self.stats.decode_steps += 1
        token_list = tokens.tolist()
        for batch, mask, (start, end) in zip(batches, masks, rows):
            batch.mask = mask
            batch.positions = batch.positions + 1
            batch.last_tokens = tokens[start:end]
        for batch, (start, end) in zip(batches, rows):
            self._process_tokens(batch, seqs[start:end], token_list[start:end])

    def _sample(self, logits: torch.Tensor, seqs: Sequence[_Sequence]) -> torch.Tensor:
        """One token per row: argmax for greedy rows; temperature + top-p with the row's generator otherwise."""
        logits = logits.float()
        tokens = logits.argmax(-1)
        rows = [i for i, seq in enumerate(seqs) if not seq.params.greedy]
        if not rows:
            return tokens
        index = torch.tensor(rows, device=logits.device)
        temperature = torch.tensor([seqs[i].params.temperature for i in rows], device=logits.device)
        top_p = torch.tensor([seqs[i].params.top_p for i in rows], device=logits.device)
        probs = F.softmax(logits[index] / temperature[:, None], dim=-1)
        if bool((top_p < 1).any()):
            sorted_probs, order = probs.sort(-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
            drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p[:, None]
            drop[:, 0] = False
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        else:
            sorted_probs, order = probs, None
        for j, i in enumerate(rows):
            choice = torch.multinomial(sorted_probs[j], 1, generator=seqs[i].generator)
            tokens[i] = order[j, choice] if order is not None else choice
        return tokens

    # ------------------------------------------------------------------ per-sequence bookkeeping
    def _process_tokens(self, batch: _Batch, seqs: Sequence[_Sequence], tokens: list[int]) -> None:
        """Give each sequence its new token; remove the sequences that finished from their batch."""
        for seq, token in zip(seqs, tokens):
            self._on_token(seq, int(token))
        self._keep(batch, [i for i, seq in enumerate(batch.seqs) if not seq.done])
        self.stats.max_running = max(self.stats.max_running, self.num_running)

    def _keep(self, batch: _Batch, rows: list[int]) -> None:
        if rows:
            batch.keep(rows)
        elif batch in self._batches:
            self._batches.remove(batch)

    def _on_token(self, seq: _Sequence, token: int) -> None:
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

    def _finish(self, seq: _Sequence, reason: str, flush: bool = True) -> None:
        if flush:
            visible, stopped = seq.stops.feed(seq.detokenizer.flush(), final=True)
            if visible:
                self._emit(seq, TextDelta(visible))
            if stopped:
                reason = "stop"
        seq.done = True
        self.stats.completed += 1
        self._emit(seq, Finished(reason, len(seq.output_ids)))

    def _fail(self, seq: _Sequence, error: BaseException) -> None:
        seq.done = True
        self.stats.failed += 1
        self._emit(seq, Failed(error))

    def _emit(self, seq: _Sequence, event: Event) -> None:
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


def _length_groups(
    items: list[T], length: Callable[[T], int], exact_long: bool = True, padding: int = 0
) -> list[list[T]]:
    """Split prompts into prefill groups of similar ``length``.

    A left-padded prefill costs (longest prompt) x (group size) tokens, and a padding mask also makes
    SDPA leave its fused causal kernel for one that materialises the (length x length) scores: for a
    3600-token prompt beside a 3000-token one, that is several times slower than two separate
    prefills. So long prompts (over ``PREFILL_MASKED_MAX_LENGTH``) share a prefill only with prompts
    of exactly their length (no mask needed), unless ``exact_long`` is False (prompts resumed from a
    cached prefix, which need a mask anyway), and shorter ones are grouped (by increasing length) while
    padding stays under ``PREFILL_PADDING_SLACK`` of the real tokens or ``padding`` positions in all.
    """
    groups: list[list[T]] = []
    current: list[T] = []
    real = 0
    for item in sorted(items, key=length):
        n = length(item)
        if current:
            if exact_long and n > PREFILL_MASKED_MAX_LENGTH:
                fits = all(length(it) == n for it in current)
            else:
                padded = n * (len(current) + 1)
                fits = padded <= PREFILL_PADDING_SLACK * (real + n) or padded - real - n <= padding
            if not fits:
                groups.append(current)
                current, real = [], 0
        current.append(item)
        real += n
    if current:
        groups.append(current)
    return groups


class _AppendLayer(DynamicLayer):
    """One layer's KV cache for a running batch, kept in buffers with room to grow in every direction.

    ``keys`` / ``values`` are views ``buffer[:rows, :, start:end]`` of (row capacity, heads, column
    capacity, head_dim) buffers, so that no event of continuous batching copies the whole cache:

    - a decode step writes one column (``DynamicLayer`` grows by ``torch.cat``, copying the whole
      cache of every layer at every step: with 32 sequences that costs as much as the attention);
    - sequences joining write only their own rows (a longer prompt takes spare columns on the left);
    - sequences leaving are overwritten by rows moved from the end (:meth:`keep_rows`), and dropping
      leading all-padding columns just moves ``start``.

    A buffer that is full is reallocated half as large again (amortised copies). Every position of
    the live window is written (real KV or zeros): padding must be finite, as the attention multiplies
    it by a zero weight.
    """

    def __init__(self):
        super().__init__()
        self._k: torch.Tensor | None = None  # (row capacity, heads, column capacity, head_dim)
        self._v: torch.Tensor | None = None
        self._rows = self._start = self._end = 0

    @property
    def _length(self) -> int:
        return self._end - self._start

    def _sync(self) -> None:
        self.keys = self._k[: self._rows, :, self._start : self._end]
        self.values = self._v[: self._rows, :, self._start : self._end]

    def _reserve(self, rows: int = 0, left: int = 0, right: int = 0) -> None:
        """Make room for ``rows`` rows in all, ``left`` free columns before the window and ``right`` after it."""
        cap_rows, cap_columns = self._k.shape[0], self._k.shape[2]
        if rows <= cap_rows and left <= self._start and self._end + right <= cap_columns:
            return
        length, room = self._length, cap_columns - self._end
        new_rows = cap_rows if rows <= cap_rows else _spare(rows, 4, 4)
        new_start = self._start if left <= self._start else left + max(64, length // 2)
        new_room = room if right <= room else right + max(64, length // 2)
        self._reallocate(new_rows, new_start, new_start + length + new_room)

    def _reallocate(self, rows: int, start: int, columns: int) -> None:
        """Move the live window into new (rows, heads, columns, head_dim) buffers, at column ``start``."""
        length = self._length
        for name in ("_k", "_v"):
            old = getattr(self, name)
            new = old.new_empty(rows, old.shape[1], columns, old.shape[3])
            new[: self._rows, :, start : start + length] = old[: self._rows, :, self._start : self._end]
            setattr(self, name, new)
        self._start, self._end = start, start + length

    def load(self, keys: torch.Tensor, values: torch.Tensor, room: int = 0) -> None:
        """Start from (B, heads, L, head_dim) states, with room for at least ``room`` more columns."""
        self.lazy_initialization(keys, values)
        rows, heads, length, dim = keys.shape
        columns = max(length + room, _spare(length, 64, 2))
        self._k = keys.new_empty(rows, heads, columns, dim)
        self._v = values.new_empty(rows, heads, columns, dim)
        self._k[:, :, :length] = keys
        self._v[:, :, :length] = values
        self._rows, self._start, self._end = rows, 0, length
        self._sync()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if self._k is None:
            self.load(key_states, value_states)
            return self.keys, self.values
        added = key_states.shape[-2]
        self._reserve(right=added)
        self._k[: self._rows, :, self._end : self._end + added] = key_states
        self._v[: self._rows, :, self._end : self._end + added] = value_states
        self._end += added
        self._sync()
        return self.keys, self.values

    def add_rows(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Append the rows of (g, heads, L', head_dim) states; all rows are left-padded to the longer length."""
        extra = keys.shape[2] - self._length
        if extra > 0:  # the newcomers are longer: the rows already here get padding columns on the left
            self._reserve(left=extra)
            self._start -= extra
            self._k[: self._rows, :, self._start : self._start + extra] = 0
            self._v[: self._rows, :, self._start : self._start + extra] = 0
        rows, new = self._rows, keys.shape[0]
        self._reserve(rows=rows + new)
        pad_end = self._end - keys.shape[2]
        self._k[rows : rows + new, :, self._start : pad_end] = 0
        self._v[rows : rows + new, :, self._start : pad_end] = 0
        self._k[rows : rows + new, :, pad_end : self._end] = keys
        self._v[rows : rows + new, :, pad_end : self._end] = values
        self._rows += new
        self._sync()

    def keep_rows(self, order: list[int], trim: int) -> None:
        """Row i becomes old row ``order[i]`` (only rows that change place are copied); drop ``trim`` leading columns."""
        moved = [(i, j) for i, j in enumerate(order) if i != j]
        if moved:
            dst = torch.tensor([i for i, _ in moved], device=self._k.device)
            src = torch.tensor([j for _, j in moved], device=self._k.device)
            window = slice(self._start, self._end)
            self._k[dst, :, window] = self._k[src, :, window]
            self._v[dst, :, window] = self._v[src, :, window]
        self._rows = len(order)
        self._start += trim
        # Buffers do not shrink as rows leave, but KV memory is what bounds a batch on a GPU: once they
        # are over twice what the live window would get afresh, they are reallocated.
        rows, columns = _spare(self._rows, 4, 4), _spare(self._length, 64, 2)
        if self._k.shape[0] * self._k.shape[2] > 2 * rows * columns:
            self._reallocate(rows, 0, columns)
        self._sync()


class _PerBatch:
    """Keys, values or attention masks of the batches decoded in one forward pass: one tensor per batch.

    ``rows[i]`` = (start, end): the rows of batch i in the forward pass's input.
    """

    __slots__ = ("parts", "rows")

    def __init__(self, parts: list[torch.Tensor], rows: list[tuple[int, int]]):
        self.parts = parts
        self.rows = rows


class _BatchesCache(DynamicCache):
    """The KV caches of several batches, as the one cache of a forward pass that decodes them all.

    Each layer's new keys and values are split by rows into the batches' own caches, and attention
    gets each batch's whole cache back (a :class:`_PerBatch`), for :func:`_batches_sdpa`.
    """

    def bind(self, batches: list[_Batch]) -> list[tuple[int, int]]:
        """Use these batches' caches (rows in this order) for the next forward pass; returns their rows."""
        self._batches, self._rows, start = batches, [], 0
        for batch in batches:
            self._rows.append((start, start + len(batch.seqs)))
            start += len(batch.seqs)
        return self._rows

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = [], []
        for batch, (start, end) in zip(self._batches, self._rows):
            k, v = batch.cache.update(key_states[start:end], value_states[start:end], layer_idx)
            keys.append(k)
            values.append(v)
        return _PerBatch(keys, self._rows), _PerBatch(values, self._rows)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(batch.cache.get_seq_length(layer_idx) for batch in self._batches)


def _batches_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, except that in a decode step of several batches at once (see
    :class:`_BatchesCache`) each batch's rows attend over their own KV cache with their own mask.

    Everything else in the forward pass (projections, norms, MLPs, rotary embeddings) runs once for the
    rows of all batches: on a CPU or for small batches, a forward pass per batch costs more in fixed
    overhead than attention over a few thousand padded positions (see ``DECODE_MERGE_PADDING``).
    """
    if not isinstance(key, _PerBatch):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = [  # each (B_i, 1, heads, head_dim)
        sdpa_attention_forward(module, query[start:end], k, v, mask, **kwargs)[0]
        for (start, end), k, v, mask in zip(key.rows, key.parts, value.parts, attention_mask.parts)
    ]
    return torch.cat(outputs), None


BATCHES_SDPA = "videollama3_batches_sdpa"
AttentionInterface.register(BATCHES_SDPA, _batches_sdpa)
AttentionMaskInterface.register(BATCHES_SDPA, sdpa_mask)  # the same masks as SDPA everywhere else


def _spare(n: int, least: int, fraction: int) -> int:
    """``n`` and room to grow: ``n / fraction`` more, at least ``least`` more."""
    return n + max(least, n // fraction)


def _make_cache(config, tensors: list[tuple[torch.Tensor, torch.Tensor]] | None = None, room: int = 0) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` with appending layers, optionally holding ``tensors`` (one per layer).

    ``room``: columns the first forward pass will append (they are written in place).
    """
    cache = DynamicCache(config=config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):  # sliding-window layers stay as they are
        cache.layers = [_AppendLayer() for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, tensors or []):
        if isinstance(layer, _AppendLayer):
            layer.load(keys, values, room)
        else:
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
    return cache


def _add_rows(layer: DynamicLayer, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Append rows of (g, heads, L', head_dim) states to a layer of a batch (all left-padded to the longer)."""
    if isinstance(layer, _AppendLayer):
        layer.add_rows(keys, values)
        return
    length = max(layer.keys.shape[2], keys.shape[2])
    layer.keys = torch.cat([_pad_left(layer.keys, length, 2), _pad_left(keys, length, 2)])
    layer.values = torch.cat([_pad_left(layer.values, length, 2), _pad_left(values, length, 2)])


def _keep_rows(layer: DynamicLayer, order: list[int], trim: int) -> None:
    """Row i of the layer becomes old row ``order[i]``; the first ``trim`` columns are dropped."""
    if isinstance(layer, _AppendLayer):
        layer.keep_rows(order, trim)
        return
    index = torch.tensor(order, device=layer.keys.device, dtype=torch.long)
    layer.keys = layer.keys.index_select(0, index)[:, :, trim:]
    layer.values = layer.values.index_select(0, index)[:, :, trim:]


def _pad_left(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def wait_idle(engine: Engine, timeout: float = 10.0) -> bool:
    """Wait until the engine has nothing waiting or running (for tests and orderly shutdowns)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not engine.num_waiting and not engine.num_running:
            return True
        time.sleep(0.01)
    return False
