"""Turning conversations with images and videos into VideoLLaMA3 inputs.

- :class:`VideoLLaMA3Processor` (``processor``): conversation(s) -> ``input_ids``, ``pixel_values``,
  ``grid_sizes``... It ties the pieces below together:
- ``conversation``: checking a conversation, and planning its images and videos before any decoding;
- ``chat_template``: :func:`render_conversation`, the prompt string;
- :class:`VideoLLaMA3ImageProcessor` (``image_processing``): the visual-token budget, resizing,
  normalisation, patchification (the pixel-level functions are in ``image``);
- :func:`load_video` / :func:`plan_video` (``video``): reference-exact frame sampling with PyAV;
- ``parallel``: thread counts (``VIDEOLLAMA3_*`` variables) and the decode / resize threads.
"""

from __future__ import annotations

from .chat_template import DEFAULT_SYSTEM_PROMPT, IMAGE_TOKEN, render_conversation
from .image import ImageReader, target_sizes
from .image_processing import OFFICIAL_IMAGE_PROCESSOR_TYPE, VideoLLaMA3ImageProcessor
from .processor import OFFICIAL_PROCESSOR_CLASS, VideoLLaMA3Processor, Videollama3Qwen2Processor
from .video import TqdmProgress, VideoPlan, VideoSampling, load_video, plan_video


class _OfficialProcessorName:
    """Registry key under which ``AutoProcessor`` finds the processor by the official class name."""


def register_auto_classes() -> None:
    """Make ``transformers.AutoProcessor.from_pretrained(checkpoint)`` return a :class:`VideoLLaMA3Processor`.

    Released checkpoints name ``Videollama3Qwen2Processor`` in ``processor_config.json``; AutoProcessor
    resolves that name among registered processors, so the alias subclass is registered too. No remote
    code is ever involved. Safe to call more than once.
    """
    from transformers import AutoProcessor

    from ..model.configuration import VideoLLaMA3Config

    AutoProcessor.register(VideoLLaMA3Config, VideoLLaMA3Processor, exist_ok=True)
    AutoProcessor.register(_OfficialProcessorName, Videollama3Qwen2Processor, exist_ok=True)


__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "IMAGE_TOKEN",
    "OFFICIAL_IMAGE_PROCESSOR_TYPE",
    "OFFICIAL_PROCESSOR_CLASS",
    "ImageReader",
    "TqdmProgress",
    "VideoLLaMA3ImageProcessor",
    "VideoLLaMA3Processor",
    "VideoPlan",
    "VideoSampling",
    "Videollama3Qwen2Processor",
    "load_video",
    "plan_video",
    "register_auto_classes",
    "render_conversation",
    "target_sizes",
]
