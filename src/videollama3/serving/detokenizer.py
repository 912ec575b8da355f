"""Generated tokens -> the text a client sees: incremental detokenisation and stop strings.

Both run per sequence on the engine's thread: :class:`IncrementalDetokenizer` turns each new token into
the text it adds, and :class:`StopMatcher` cuts that text at the first stop string (never emitting part
of one).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer


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
        self._backend = backend_decoder(tokenizer)

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


def backend_decoder(tokenizer):
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
