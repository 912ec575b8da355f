"""A live video session: frames arrive one at a time, the user asks at any moment, the model may speak up.

``session = model.live(processor)`` returns a :class:`LiveSession`. Every frame is resized, encoded, pruned
and appended to the LLM's KV cache as soon as it arrives, so a question costs only its own tokens, however
long the stream. This is *exact*: the vision encoder attends within each frame and the Differential Frame
Pruner compares a frame with the one before only, so encoding frame by frame gives the features that one
offline pass over the whole video gives, and the LLM's cache holds what one forward over the whole
conversation computes (``tests/model/test_live.py`` checks the logits at every position, fp32, 1e-4).

Prompt layout: the released (inference) chat template's ``stream`` messages, one frame each, rendered by
the processor itself (see ``docs/live.md``)::

    <|im_start|>system\\n...<|im_end|>\\n                 the default system prompt (optional)
    <|stream_start|>stream\\nTime 0.0s: <image>×k0\\n<|stream_end|>
    <|stream_start|>stream\\nTime 1.0s: <image>×k1\\n<|stream_end|>
    <|im_start|>user\\nWhat happens?<|im_end|>\\n          session.ask(...)
    <|im_start|>assistant\\nA ball rolls.<|im_end|>\\n     its answer
    <|stream_start|>stream\\nTime 2.0s: <image>×k2\\n<|stream_end|>
    <|im_start|>assistant\\nIt stopped.<|im_end|>\\n       the model chose to speak after that frame

``<image>×k`` are the k visual tokens the frame keeps after pruning. The frames are one video item (video
merge size, one frame size fixed by the first frame, pruning across consecutive frames), as the official
code passes the frames of a stream as one video.

Respond-now: ``<|stream_end|>`` ends a frame without a newline, so the next token is the first token of the
next message; the official training supervises exactly that token: ``<|stream_start|>`` (another frame:
stay silent) or ``<|im_start|>`` (an assistant turn: speak). After every frame the session compares the two
logits and speaks when ``logit(<|im_start|>) - logit(<|stream_start|>) > speak_margin``.

Memory: with ``max_cache_tokens`` the cache never holds more tokens. When an append would pass it, whole
messages are evicted oldest first (the system prompt stays) until a quarter of the budget is free; the keys
left are rotated back so that positions stay contiguous (RoPE is relative: the window keeps its internal
distances). Evicting breaks the equality with an offline forward: the remaining tokens were computed while
the evicted ones were visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache

from ..errors import InputError, MediaError
from .llm_cache import cache_kwargs
from .pruning import item_pruning_mask
from .sampling import nucleus
from .token_layout import merged_tokens

if TYPE_CHECKING:
    from .modeling import VideoLLaMA3ForCausalLM

STREAM_START, STREAM_END = "<|stream_start|>", "<|stream_end|>"
TURN_START, TURN_END = "<|im_start|>", "<|im_end|>"
# RoPE variants whose frequencies depend on the sequence length: a stored key cannot be moved to another
# position by a plain rotation, so eviction (which renumbers positions) is refused for them.
_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


@dataclass
class FrameResult:
    """What :meth:`LiveSession.add_frame` did with one frame."""

    time: float  # the frame's stream time, seconds
    kept_tokens: int  # visual tokens the frame added to the cache, after pruning
    total_tokens: int  # visual tokens of the frame before pruning
    speak_score: float  # logit(<|im_start|>) - logit(<|stream_start|>) right after the frame
    spoke: bool  # whether the model answered on its own after this frame
    text: str  # what it said ("" when silent)
    evicted_tokens: int  # tokens evicted from the cache to make room (0 while the session is exact)


@dataclass
class _Message:
    """One rendered message in the cache (its token ids, with one ``<image>`` per kept visual token)."""

    role: str  # "system" | "stream" | "user" | "assistant"
    token_ids: list[int]
    time: float | None = None  # stream messages: the frame's time
    text: str = ""  # user / assistant messages: their text
    kept_tokens: int = 0  # stream messages: visual tokens kept


@dataclass
class _Video:
    """The session's video: its fixed size, and the previous frame's patches for the pruner."""

    height: int  # of the input frames, before resizing
    width: int
    grid: torch.Tensor  # (1, 3) [1, gh, gw] in patches, after resizing
    previous_rows: torch.Tensor | None = field(default=None, repr=False)  # (gh * gw, 3 * 14 * 14)
    time: float = -math.inf


class LiveSession:
    """A stream of video frames and a conversation about them, on one model (use ``model.live(processor)``).

    Args:
        model: a :class:`VideoLLaMA3ForCausalLM` (in eval mode; any device and dtype).
        processor: the checkpoint's :class:`~videollama3.processing.VideoLLaMA3Processor`: it resizes,
            normalises and patchifies the frames and renders every message, so the session's prompt is the
            processor's.
        tokens_per_frame: visual-token budget of one frame, before pruning (default: the processor's
            ``image_processor.max_tokens // max_frames``, what an offline video of ``max_frames`` frames
            gets). The first frame fixes the frame size, as the processor sizes a one-frame video under
            this budget.
        system_prompt: True: the default system prompt (as the processor's ``add_system_prompt=True``);
            a string: that system message; False / None: none.
        prune: apply the Differential Frame Pruner (default: the model config's ``use_token_compression``,
            with its ``compression_threshold`` and ``compression_min_tokens``).
        autonomous: let the model speak after a frame when it chooses to (the respond-now decision).
        speak_margin: the model speaks when ``logit(<|im_start|>) - logit(<|stream_start|>)`` exceeds it.
        max_speech_tokens: longest answer the model gives on its own.
        max_cache_tokens: the cache never holds more tokens (default: ``max_position_embeddings``; None:
            unbounded). See the module docstring for the eviction policy.
        keep_logits: keep the logits of every position appended (``session.logits``, for checking exactness;
            memory grows with the stream).
    """

    def __init__(
        self,
        model: VideoLLaMA3ForCausalLM,
        processor: Any,
        *,
        tokens_per_frame: int | None = None,
        system_prompt: bool | str | None = True,
        prune: bool | None = None,
        autonomous: bool = True,
        speak_margin: float = 0.0,
        max_speech_tokens: int = 64,
        max_cache_tokens: int | None | str = "default",
        keep_logits: bool = False,
    ):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        config = model.config
        if tokens_per_frame is None:
            tokens_per_frame = max(1, processor.image_processor.max_tokens // processor.max_frames)
        self.tokens_per_frame = _positive_int(tokens_per_frame, "tokens_per_frame")
        self.merge_size = int(processor.video_merge_size)
        self.prune = bool(config.use_token_compression if prune is None else prune)
        self.autonomous = bool(autonomous)
        if not isinstance(speak_margin, Real) or math.isnan(speak_margin):
            raise InputError(f"speak_margin must be a number of logits, got {speak_margin!r}")
        self.speak_margin = float(speak_margin)
        self.max_speech_tokens = _positive_int(max_speech_tokens, "max_speech_tokens")
        if max_cache_tokens == "default":
            max_cache_tokens = config.max_position_embeddings
        self.max_cache_tokens = (
            None if max_cache_tokens is None else _positive_int(max_cache_tokens, "max_cache_tokens")
        )
        self.keep_logits = bool(keep_logits)
        self.logits: list[torch.Tensor] = []  # (n, V) fp32 on the CPU per append, with keep_logits

        self._ids = {token: self._token_id(token) for token in (STREAM_START, STREAM_END, TURN_START, TURN_END)}
        self._image_id = config.image_token_index
        self._stop_ids = {self._ids[TURN_END], *_as_id_set(model.generation_config.eos_token_id)}
        self._stop_ids |= _as_id_set(self.tokenizer.eos_token_id)
        # The template's pieces that are not whole messages, cut out of whole renderings by the processor:
        # the assistant header (the generation prompt) and what closes an assistant message.
        self._assistant_header = self._encode(self._template_delta([_turn("user", "")], add_generation_prompt=True))
        header_and_close = self._encode(self._render([_turn("assistant", "")]))
        if header_and_close[: len(self._assistant_header)] != self._assistant_header:
            raise AssertionError("the assistant header does not tokenize the same alone and in a message")
        self._assistant_close = header_and_close[len(self._assistant_header) :]

        self._cache = DynamicCache(config=config)
        self._messages: list[_Message] = []
        self._length = 0  # tokens in the cache
        self._last_logits: torch.Tensor | None = None  # (V,) next-token logits after the last token
        self._frame: _Video | None = None
        self._open_answer: Iterator[str] | None = None  # an ask() answer not yet read to its end

        if system_prompt is True:
            system_ids = self._encode(self._template_delta([_turn("user", "")], add_system_prompt=True, before=True))
            self._append(_Message("system", system_ids, text=self.tokenizer.decode(system_ids)))
        elif isinstance(system_prompt, str):
            self._append(
                _Message("system", self._encode(self._render([_turn("system", system_prompt)])), text=system_prompt)
            )
        elif system_prompt not in (False, None):
            raise InputError(f"system_prompt must be True, False, None or a string, got {system_prompt!r}")

    # ------------------------------------------------------------------ public API
    @property
    def cache_tokens(self) -> int:
        """Tokens in the LLM's KV cache (the next token's position)."""
        return self._length

    @property
    def input_ids(self) -> torch.Tensor:
        """(L,) the token ids the cache holds, one ``<image>`` id per kept visual token."""
        return torch.tensor([i for m in self._messages for i in m.token_ids], dtype=torch.long)

    @property
    def transcript(self) -> list[dict]:
        """The messages the cache holds, oldest first: ``{"role", "time"}`` / ``{"role", "text"}``."""
        out = []
        for m in self._messages:
            if m.role == "stream":
                out.append({"role": "stream", "time": m.time, "kept_tokens": m.kept_tokens})
            else:
                out.append({"role": m.role, "text": m.text})
        return out

    @torch.no_grad()
    def add_frame(self, image: Any, t: float) -> FrameResult:
        """Append one frame (PIL image or (H, W, 3) uint8 array) shown at stream time ``t`` seconds.

        The frame is sized, normalised and patchified by the processor (the size fixed by the first frame),
        encoded, pruned against the previous frame, and appended as a ``stream`` message. Then, if the
        session is autonomous and the model chooses an assistant turn over another frame, it speaks.
        """
        self._close_answer()
        t = self._check_time(t)
        height, width = _frame_size(image, t)
        if self._frame is not None and (height, width) != (self._frame.height, self._frame.width):
            raise MediaError(
                f"add_frame: the frame at t={t} is {width}x{height} but this session's frames are "
                f"{self._frame.width}x{self._frame.height} (fixed by the first frame)"
            )

        # Pixels exactly as the processor makes a one-frame video's: its size rule, resize, normalisation.
        pixels = self.processor.image_processor([image], merge_size=self.merge_size, max_tokens=self.tokens_per_frame)
        rows = pixels["pixel_values"]  # (gh * gw, 3 * 14 * 14)
        grid, merge = pixels["grid_sizes"], pixels["merge_sizes"]  # (1, 3), (1,)
        video = self._frame or _Video(height, width, grid)  # the first frame fixes the size
        if not torch.equal(grid, video.grid):  # cannot happen for one input size; guards the invariant
            raise AssertionError(f"frame grid {grid.tolist()} differs from the session's {video.grid.tolist()}")
        keep = self._keep_mask(rows, video)  # (tokens,)

        device = self._device
        features = self.model.encode_images(rows.to(device), grid, merge)  # (tokens, H)
        features = features[keep.to(device)]  # (kept, H)
        kept = int(keep.sum())

        item = {"type": "image", "image": image, "timestamp": t}
        ids = self._expand(self._encode(self._render([{"role": "stream", "content": [item]}])), kept)
        reserve = self._speech_room() if self.autonomous else 0
        evicted = self._make_room(len(ids) + reserve)
        self._append(_Message("stream", ids, time=t, kept_tokens=kept), features)
        # Only now, the frame being in the cache, does it become the previous frame (a refused frame is not).
        video.previous_rows, video.time = rows, t
        self._frame = video

        logits = self._last_logits  # (V,): what follows <|stream_end|>
        score = float(logits[self._ids[TURN_START]] - logits[self._ids[STREAM_START]])
        spoke, text = False, ""
        if self.autonomous and score > self.speak_margin:
            spoke = True
            text = "".join(self._answer(self.max_speech_tokens, 0.0, 1.0, None))
        return FrameResult(t, kept, keep.numel(), score, spoke, text, evicted)

    @torch.no_grad()
    def ask(
        self,
        text: str,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Iterator[str]:
        """Ask about everything seen so far; returns an iterator of the answer's text pieces.

        The question is appended at once; the answer is generated as the iterator is read (greedy unless
        ``temperature`` > 0) and its tokens stay in the cache, so the conversation continues. An answer
        left unread is closed (cut where it stopped) by the next ``add_frame`` or ``ask``.
        """
        self._close_answer()
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"ask: the question must be a non-empty string, got {text!r:.100}")
        max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
        if not isinstance(temperature, Real) or not temperature >= 0:
            raise InputError(f"ask: temperature must be >= 0 (0 = greedy), got {temperature!r}")
        if not isinstance(top_p, Real) or not 0 < top_p <= 1:
            raise InputError(f"ask: top_p must be in (0, 1], got {top_p!r}")
        ids = self._encode(self._render([_turn("user", text)]))
        self._make_room(len(ids) + len(self._assistant_header) + max_new_tokens + len(self._assistant_close))
        self._append(_Message("user", ids, text=text))
        self._open_answer = self._answer(max_new_tokens, float(temperature), float(top_p), generator)
        return self._open_answer

    # ------------------------------------------------------------------ frames
    def _check_time(self, t: Any) -> float:
        if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(t):
            raise InputError(f"add_frame: t must be a finite number of seconds, got {t!r}")
        t = float(t)
        if self._frame is not None and t <= self._frame.time:
            raise InputError(
                f"add_frame: frames must come in increasing time: t={t} after a frame at t={self._frame.time}"
            )
        return t

    def _keep_mask(self, rows: torch.Tensor, video: _Video) -> torch.Tensor:
        """DiffFP keep-mask of the new frame, (tokens,): the first frame keeps everything; later frames are
        pruned against the previous one by ``pruning.item_pruning_mask`` on the pair (the rule is local to
        consecutive frames, which is what makes frame-by-frame pruning equal to pruning the whole video)."""
        _, gh, gw = video.grid[0].tolist()
        tokens = merged_tokens((1, gh, gw), self.merge_size)
        previous = video.previous_rows
        if not self.prune or previous is None:
            return torch.ones(tokens, dtype=torch.bool)
        config = self.model.config
        pair = torch.cat([previous, rows])  # (2 * gh * gw, 3 * 14 * 14)
        mask = item_pruning_mask(
            pair, (2, gh, gw), self.merge_size, config.compression_threshold, config.compression_min_tokens
        )
        return mask[tokens:]  # the previous frame's half was decided when it arrived

    def _expand(self, ids: list[int], kept: int) -> list[int]:
        """Repeat the one ``<image>`` id of a rendered frame message ``kept`` times."""
        if ids.count(self._image_id) != 1:
            raise AssertionError(f"a frame message renders to {ids.count(self._image_id)} <image> tokens, not 1")
        at = ids.index(self._image_id)
        return ids[:at] + [self._image_id] * kept + ids[at + 1 :]

    # ------------------------------------------------------------------ answers
    def _speech_room(self) -> int:
        return len(self._assistant_header) + self.max_speech_tokens + len(self._assistant_close)

    def _answer(self, max_new_tokens: int, temperature: float, top_p: float, generator) -> Iterator[str]:
        """Generate an assistant turn after the cache's last token, yielding text pieces; the turn is closed
        (``<|im_end|>\\n`` appended) when it ends, is cut at ``max_new_tokens``, or is abandoned."""
        message = _Message("assistant", [])
        self._append(message, token_ids=self._assistant_header)
        answer: list[int] = []
        emitted = ""
        try:
            for _ in range(max_new_tokens):
                token = _pick(self._last_logits, temperature, top_p, generator)
                if token in self._stop_ids:
                    break
                answer.append(token)
                self._append(message, token_ids=[token])
                text = self.tokenizer.decode(answer, skip_special_tokens=True)
                message.text = text
                if not text.endswith("\ufffd"):  # an unfinished UTF-8 character: wait for its next byte
                    piece, emitted = text[len(emitted) :], text
                    if piece:
                        yield piece
            if message.text != emitted:  # the answer ended inside a character: give what there is
                yield message.text[len(emitted) :]
        finally:  # also on an abandoned answer (GeneratorExit): the cache must hold a closed turn
            self._append(message, token_ids=self._assistant_close)

    def _close_answer(self) -> None:
        """Before anything new is appended: end the last ``ask`` answer where its reader left it."""
        if self._open_answer is None:
            return
        answer, self._open_answer = self._open_answer, None
        answer.close()  # a started answer runs its `finally` (closes the turn); a finished one does nothing
        if self._messages[-1].role == "user":  # never started: the question gets an empty answer
            self._append(_Message("assistant", self._assistant_header + self._assistant_close))

    # ------------------------------------------------------------------ the cache
    @property
    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @torch.no_grad()  # also called from generators, which run outside the caller's no_grad
    def _append(self, message: _Message, features: torch.Tensor | None = None, token_ids: list[int] | None = None):
        """Run the LLM over new tokens, extending the KV cache; ``token_ids`` None: the message's own ids (a
        new message), else ids that extend ``message`` (an answer growing)."""
        if token_ids is None:
            token_ids = message.token_ids
            self._messages.append(message)
        else:
            if not self._messages or self._messages[-1] is not message:
                self._messages.append(message)
            message.token_ids = message.token_ids + list(token_ids)
        n = len(token_ids)
        if n == 0:
            return
        device = self._device
        input_ids = torch.tensor([token_ids], dtype=torch.long, device=device)  # (1, n)
        embeds = self.model.merge_visual_features(input_ids, features)  # (1, n, H)
        positions = torch.arange(self._length, self._length + n, device=device)[None]  # (1, n)
        out = self.model(
            inputs_embeds=embeds,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=0 if self.keep_logits else 1,
            **cache_kwargs(self._cache),
        )
        logits = out.logits[0]  # (n or 1, V)
        if self.keep_logits:
            self.logits.append(logits.float().cpu())
        self._last_logits = logits[-1].float()
        self._length += n

    def _make_room(self, needed: int) -> int:
        """Evict the oldest messages (never the system prompt) so that ``needed`` more tokens fit under
        ``max_cache_tokens``; evicts down to three quarters of the budget, so that the (rounding) cost of
        renumbering positions is paid rarely. Returns the number of tokens evicted."""
        limit = self.max_cache_tokens
        if limit is None or self._length + needed <= limit:
            return 0
        pinned = 1 if self._messages and self._messages[0].role == "system" else 0
        pinned_tokens = sum(len(m.token_ids) for m in self._messages[:pinned])
        if pinned_tokens + needed > limit:
            raise InputError(
                f"max_cache_tokens={limit} is too small: the system prompt ({pinned_tokens} tokens) and the next "
                f"message with room for its answer ({needed} tokens) do not fit"
            )
        low_water = max(limit - limit // 4, pinned_tokens + needed)
        drop = pinned
        evicted = 0
        while drop < len(self._messages) and self._length - evicted + needed > low_water:
            evicted += len(self._messages[drop].token_ids)
            drop += 1
        del self._messages[pinned:drop]
        self._evict(pinned_tokens, evicted)
        return evicted

    @torch.no_grad()
    def _evict(self, start: int, count: int) -> None:
        """Remove cache positions [start, start + count) and move the later keys ``count`` positions back."""
        if count == 0:
            return
        rotary = self.model.model.rotary_emb
        rope_type = str(getattr(rotary, "rope_type", "default"))
        if any(kind in rope_type for kind in _LENGTH_DEPENDENT_ROPE):
            raise InputError(
                f"cannot evict from the cache of a model with {rope_type!r} RoPE (its frequencies depend on the "
                "length); pass max_cache_tokens=None"
            )
        for layer in self._cache.layers:
            if getattr(layer, "is_sliding", False):
                raise InputError("a live session's eviction needs full-attention layers (no sliding window)")
            keys, values = layer.keys, layer.values  # (1, kv_heads, L, head_dim)
            moved = shift_key_positions(keys[:, :, start + count :], -count, rotary.inv_freq)
            layer.keys = torch.cat([keys[:, :, :start], moved], dim=2)
            layer.values = torch.cat([values[:, :, :start], values[:, :, start + count :]], dim=2)
        self._length -= count

    # ------------------------------------------------------------------ text
    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == getattr(self.tokenizer, "unk_token_id", None):
            raise InputError(f"the tokenizer has no {token!r} token: this checkpoint cannot run a live session")
        return int(token_id)

    def _render(self, messages: list[dict], **flags) -> str:
        return self.processor.apply_chat_template(messages, **flags)

    def _template_delta(self, messages: list[dict], before: bool = False, **flags) -> str:
        """What ``flags`` add to the rendering of ``messages``: the text before it (``before``) or after it."""
        plain, flagged = self._render(messages), self._render(messages, **flags)
        return flagged[: len(flagged) - len(plain)] if before else flagged[len(plain) :]

    def _encode(self, text: str) -> list[int]:
        # Messages start and end at special tokens, which the tokenizer never merges across: tokenizing them
        # one by one gives the ids of tokenizing the whole conversation at once.
        return self.tokenizer(text)["input_ids"]


def shift_key_positions(keys: torch.Tensor, delta: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Move RoPE-rotated keys ``delta`` positions: rotate each (rotate-half) pair by ``delta * inv_freq``.

    A key stored at position p is ``R(p) k``; ``R(delta) R(p) k = R(p + delta) k``. Computed in fp32.

    Args:
        keys: (..., L, head_dim) keys after RoPE.
        inv_freq: (head_dim / 2,) the model's RoPE frequencies.
    """
    angles = delta * inv_freq.to(keys.device, torch.float32)  # (head_dim / 2,)
    cos = torch.cat([angles.cos(), angles.cos()])  # (head_dim,)
    sin = torch.cat([angles.sin(), angles.sin()])
    k = keys.float()
    k1, k2 = k.chunk(2, dim=-1)
    rotated_half = torch.cat([-k2, k1], dim=-1)
    return (k * cos + rotated_half * sin).to(keys.dtype)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """The next token from (V,) logits: argmax when ``temperature`` is 0, else nucleus sampling."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        kept, order = nucleus(probs, top_p)
        probs = torch.zeros_like(probs).scatter_(0, order, kept)  # back in vocabulary order
    return int(torch.multinomial(probs, 1, generator=generator))


def _frame_size(image: Any, t: float) -> tuple[int, int]:
    """(height, width) of a frame; refuses anything but a PIL image or an (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        width, height = image.size
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        dtype = image.dtype
        if dtype not in (np.uint8, torch.uint8):
            raise MediaError(f"add_frame: the frame at t={t} must be a uint8 array (0-255), got dtype {dtype}")
        if image.ndim != 3 or image.shape[-1] != 3:
            raise MediaError(
                f"add_frame: the frame at t={t} must be an (H, W, 3) RGB array, got shape {tuple(image.shape)}"
            )
        height, width = int(image.shape[0]), int(image.shape[1])
    else:
        raise MediaError(
            f"add_frame: the frame at t={t} must be a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}"
        )
    if height < 1 or width < 1:
        raise MediaError(f"add_frame: the frame at t={t} is empty ({width}x{height})")
    return height, width


def _turn(role: str, text: str) -> dict:
    return {"role": role, "content": text}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_id_set(ids: Any) -> set[int]:
    if ids is None:
        return set()
    if isinstance(ids, (list, tuple, set)):
        return {int(i) for i in ids}
    return {int(ids)}


__all__ = ["FrameResult", "LiveSession", "shift_key_positions"]
