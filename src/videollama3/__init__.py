"""VideoLLaMA3 in PyTorch: reference-exact inference, batched generation, training, serving and evaluation.

``import videollama3`` registers the classes with transformers' Auto classes, so that
``AutoConfig`` / ``AutoModelForCausalLM`` (and ``AutoProcessor``) resolve ``videollama3_qwen2``
checkpoints to this package without ``trust_remote_code``.
"""

from __future__ import annotations

from .configuration import VideoLLaMA3Config, VideoLLaMA3VisionConfig
from .errors import (
    CheckpointError,
    ConfigError,
    ConversationError,
    InputError,
    MediaError,
    MediaNotFoundError,
    VideoLLaMA3Error,
)
from .modeling import VideoLLaMA3ForCausalLM
from .processing import VideoLLaMA3ImageProcessor, VideoLLaMA3Processor

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from .configuration import MODEL_TYPE

    AutoConfig.register(MODEL_TYPE, VideoLLaMA3Config, exist_ok=True)
    AutoModelForCausalLM.register(VideoLLaMA3Config, VideoLLaMA3ForCausalLM, exist_ok=True)
    from .processing import register_auto_classes

    register_auto_classes()


_register_auto_classes()

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConversationError",
    "InputError",
    "MediaError",
    "MediaNotFoundError",
    "VideoLLaMA3Config",
    "VideoLLaMA3ForCausalLM",
    "VideoLLaMA3ImageProcessor",
    "VideoLLaMA3Processor",
    "VideoLLaMA3VisionConfig",
    "VideoLLaMA3Error",
]
