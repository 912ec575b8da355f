"""VideoLLaMA3 in PyTorch: reference-exact inference, batched generation, training, serving and evaluation.

``import videollama3`` is cheap: it loads neither torch nor transformers. The public names below are
imported on first use (PEP 562, as transformers' own ``_LazyModule`` does), and VideoLLaMA3 is registered
with transformers' Auto classes as soon as those are imported (see :mod:`videollama3.auto_registration`),
so that ``AutoConfig`` / ``AutoModelForCausalLM`` / ``AutoProcessor`` resolve ``videollama3_qwen2``
checkpoints to this package without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import auto_registration

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_NAMES = {
    "VideoLLaMA3Config": ".model.configuration",
    "VideoLLaMA3VisionConfig": ".model.configuration",
    "VideoLLaMA3ForCausalLM": ".model.modeling",
    "VideoLLaMA3ImageProcessor": ".processing",
    "VideoLLaMA3Processor": ".processing",
    "CheckpointError": ".errors",
    "ConfigError": ".errors",
    "ConversationError": ".errors",
    "InputError": ".errors",
    "MediaError": ".errors",
    "MediaNotFoundError": ".errors",
    "VideoLLaMA3Error": ".errors",
}

auto_registration.install()


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


if TYPE_CHECKING:
    from .errors import (
        CheckpointError,
        ConfigError,
        ConversationError,
        InputError,
        MediaError,
        MediaNotFoundError,
        VideoLLaMA3Error,
    )
    from .model.configuration import VideoLLaMA3Config, VideoLLaMA3VisionConfig
    from .model.modeling import VideoLLaMA3ForCausalLM
    from .processing import VideoLLaMA3ImageProcessor, VideoLLaMA3Processor

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversationError",
    "InputError",
    "MediaError",
    "MediaNotFoundError",
    "VideoLLaMA3Config",
    "VideoLLaMA3Error",
    "VideoLLaMA3ForCausalLM",
    "VideoLLaMA3ImageProcessor",
    "VideoLLaMA3Processor",
    "VideoLLaMA3VisionConfig",
]
