"""Supervision labels and length limits of a tokenized conversation.

The reference rule (official ``Videollama3Processor._process_text_with_label``): every message is
rendered alone and tokenized; in an assistant message the tokens after the ``<|im_start|>assistant\\n``
header up to and including ``<|im_end|>`` are supervised, the ``\\n`` that follows is not; system and user
messages and all visual tokens are ignored (``-100``).

The processor tokenizes the whole prompt at once, which gives the same ids as tokenizing message by
message: every message starts with the special token ``<|im_start|>`` and ends with ``<|im_end|>\\n``, and
special tokens split the text before byte-pair encoding, so no token ever spans two messages. The rule can
therefore be applied to the processor's ids directly: a message is the run of tokens from one
``<|im_start|>`` to the next. ``tests/training/test_labels.py`` checks this against the per-message
reference on the fixture tokenizer.

Streaming records (``"stream": true``) add ``stream`` messages, one per video frame, with a rule of their own
(the token after the frame and ``<|stream_end|>``, balanced by negative sampling): see
:mod:`.streaming`, which labels such a sample message by message and uses :func:`supervised_labels` for its
assistant messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .annotations import SampleError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ChatTokens:
    """Token ids the label rule needs, read from the tokenizer."""

    im_start: int
    im_end: int
    image: int
    assistant_header: tuple[int, ...]  # ids of "<|im_start|>assistant\n"
    eos: int | None = None  # the tokenizer's end-of-sequence id: a sample type of stream messages

    @classmethod
    def from_tokenizer(cls, tokenizer, image_token: str = "<image>") -> ChatTokens:
        header = tuple(tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
        return cls(
            im_start=tokenizer.convert_tokens_to_ids("<|im_start|>"),
            im_end=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            image=tokenizer.convert_tokens_to_ids(image_token),
            assistant_header=header,
            eos=tokenizer.eos_token_id,
        )


def supervised_labels(input_ids: torch.Tensor, tokens: ChatTokens) -> torch.Tensor:
    """Labels for one sample: assistant answers and their ``<|im_end|>``, ``-100`` elsewhere.

    Args:
        input_ids: (L,) ids of one conversation as the processor returns them.

    Returns:
        (L,) int64 labels, not shifted (position i is the target of logits at i - 1).
    """
    ids = input_ids.tolist()
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    starts = [i for i, t in enumerate(ids) if t == tokens.im_start] + [len(ids)]
    header = tokens.assistant_header
    # The role is the tokens between <|im_start|> and the newline token; compare all but that newline, so an
    # answer starting with "\n" (whose newline BPE merges into the header's) is still recognised. As in the
    # reference, the whole header-length prefix is then excluded, merged newline included.
    role = header[1:-1]
    for start, end in zip(starts, starts[1:]):
        if tuple(ids[start + 1 : start + 1 + len(role)]) != role or start + len(header) > end:
            continue
        first = start + len(header)
        stop = end
        for i in range(first, end):
            if ids[i] == tokens.im_end:
                stop = i + 1  # <|im_end|> is supervised, what follows it (the "\n") is not
                break
        labels[first:stop] = input_ids[first:stop]
    labels[input_ids == tokens.image] = IGNORE_INDEX
    return labels


@dataclass
class Fitted:
    input_ids: torch.Tensor  # (L',)
    labels: torch.Tensor  # (L',)
    truncated: bool  # text at the end was cut


def fit_length(input_ids: torch.Tensor, labels: torch.Tensor, max_length: int, image_token: int) -> Fitted:
    """Cut a sample to ``max_length`` tokens without ever cutting through visual tokens.

    Text after the last visual token may be cut (the sample is kept and counted as truncated, as long as
    something is left to supervise). A sample whose visual tokens themselves reach past ``max_length``
    cannot be shortened without mismatching its pixels: it raises ``SampleError("too_long")``.
    """
    length = input_ids.numel()
    if length <= max_length:
        return Fitted(input_ids, labels, truncated=False)
    visual = (input_ids == image_token).nonzero()
    last_visual = int(visual[-1]) if visual.numel() else -1
    if last_visual >= max_length:
        raise SampleError(
            "too_long",
            f"{length} tokens, and its visual tokens alone reach position {last_visual + 1} > model_max_length "
            f"{max_length}; lower mm_max_length or raise model_max_length",
        )
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if not bool((labels[1:] != IGNORE_INDEX).any()):
        raise SampleError("no_answer", f"{length} tokens: nothing left to supervise after cutting to {max_length}")
    return Fitted(input_ids, labels, truncated=True)
