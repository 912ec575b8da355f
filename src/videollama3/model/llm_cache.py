"""The LLM's KV cache as an argument and an output, on every supported transformers release.

transformers 5.25 renamed the KV-cache argument of every forward and the field of every model output from
``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40). ``generate`` hands our forward
whichever name the installed release uses, and our code passes it on under the name the installed Qwen2
model takes, read from its public ``forward`` signature. Nothing else here depends on the name, and
``tests/test_llm_cache.py`` checks on the installed release that the name we pass is the one its
``generate`` uses.
"""

from __future__ import annotations

import inspect
from typing import Any

from transformers import Cache, Qwen2Model

from ..errors import InputError

# The name the installed transformers' models take (and report) their KV cache under.
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"
_CACHE_NAMES = ("cache", "past_key_values")  # transformers >= 5.25, and before


def pop_cache(kwargs: dict[str, Any]) -> Cache | None:
    """Remove the KV cache from a forward's ``kwargs``, under either name; None when there is none."""
    given = [kwargs.pop(name) for name in _CACHE_NAMES if name in kwargs]
    given = [cache for cache in given if cache is not None]
    if len(given) > 1:
        raise InputError("the KV cache was given twice (as `cache` and as `past_key_values`): give it once")
    return given[0] if given else None


def cache_kwargs(cache: Cache | None) -> dict[str, Cache]:
    """``{name: cache}`` for a call of the installed transformers' models (empty for no cache)."""
    return {} if cache is None else {CACHE_ARGUMENT: cache}


def output_cache(outputs: Any) -> Cache | None:
    """The KV cache a model output carries (``outputs.cache`` or ``outputs.past_key_values``)."""
    return outputs.get(CACHE_ARGUMENT)


def holds_tokens(cache: Cache | None) -> bool:
    """Whether ``cache`` already holds keys and values (a decode step rather than a prefill)."""
    return cache is not None and cache.get_seq_length() > 0
