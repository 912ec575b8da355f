"""An lmms-eval model, ``videollama3_local``: this package's VideoLLaMA3 (no remote code) inside lmms-eval.

lmms-eval is optional: this module imports it only when it is installed, and works without it (the
class then derives from a stand-in of lmms-eval's ``lmms`` base with the same attributes, so its logic
can be used and tested alone). Registration, once lmms-eval is installed, by either:

- the entry point ``[project.entry-points."lmms_eval.models"] videollama3_local =
  "videollama3.evaluation.lmms_eval:lmms_eval_manifest"`` (lmms-eval >= 0.5 loads it by itself), or
- calling :func:`register` before lmms-eval's ``cli_evaluate`` (any version)::

      python -c "import videollama3.evaluation.lmms_eval as m, sys; m.register(); \\
                 from lmms_eval.__main__ import cli_evaluate; sys.argv[0] = 'lmms_eval'; cli_evaluate()" \\
          --model videollama3_local --model_args pretrained=DAMO-NLP-SG/VideoLLaMA3-7B --tasks mvbench

Generation is greedy (the official evaluation setting) with the official video sampling (1 fps, at most
180 frames) and visual-token budget (16384), all overridable in ``--model_args``. ``until`` stop strings
of a task are applied to the answer. Log-likelihood requests are not supported (VideoLLaMA3's
evaluations are generative): they raise ``NotImplementedError`` naming the task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import EvalSettings, frames_item, image_item, text_item, video_item

logger = logging.getLogger(__name__)

MODEL_NAME = "videollama3_local"
CLASS_PATH = "videollama3.evaluation.lmms_eval.VideoLLaMA3Local"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif", ".m4v", ".flv"}


class _LmmsStandIn:
    """What lmms-eval's ``lmms`` base class provides, for use without lmms-eval installed."""

    is_simple = True

    def __init__(self) -> None:
        self._rank = 0
        self._world_size = 1
        self.cache_hook = None
        self.task_dict: dict[str, Any] = {}

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size


def _lmms_base() -> type:
    try:
        from lmms_eval.api.model import lmms
    except ImportError:
        return _LmmsStandIn
    return lmms


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class VideoLLaMA3Local(_lmms_base()):
    """lmms-eval model ``videollama3_local``.

    Args (``--model_args key=value,...``):
        pretrained: checkpoint folder or hub name, in either layout.
        device: default ``cuda:<LOCAL_RANK>`` when available, else ``cpu``.
        dtype: ``auto`` (bfloat16 on CUDA), ``float32``, ``bfloat16``, ``float16``.
        batch_size: requests per ``generate`` call.
        fps, max_frames, max_visual_tokens, max_new_tokens: the official evaluation settings by default;
            a task's ``max_new_tokens`` generation argument wins over ``max_new_tokens``.
        predictor: an object with ``generate(requests)`` to use instead of loading ``pretrained``.
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str = "DAMO-NLP-SG/VideoLLaMA3-7B",
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        fps: float = 1,
        max_frames: int = 180,
        max_visual_tokens: int = 16384,
        max_new_tokens: int = 2048,
        predictor: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        ignored = {k: v for k, v in kwargs.items() if v is not None}
        if ignored:
            logger.warning("%s ignores model_args %s", MODEL_NAME, sorted(ignored))
        self.settings = EvalSettings(
            fps=float(fps),
            max_frames=int(max_frames),
            max_visual_tokens=int(max_visual_tokens),
            max_new_tokens=int(max_new_tokens),
            batch_size=int(batch_size),
        )
        # lmms-eval splits requests by rank itself; it only needs to know ours.
        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        if predictor is None:
            from .predictors import ModelPredictor

            predictor = ModelPredictor(str(pretrained), self.settings, device=device, dtype=dtype)
        self.predictor = predictor
        self.batch_size = int(batch_size)

    # -- lmms API ------------------------------------------------------------------------------------

    def loglikelihood(self, requests: list) -> list:
        tasks = sorted({str(getattr(r, "task_name", None) or r.args[4]) for r in requests}) if requests else []
        raise NotImplementedError(
            f"{MODEL_NAME} does not compute log-likelihoods (VideoLLaMA3 is evaluated generatively); "
            f"use generate_until versions of the tasks {tasks or ''}".rstrip()
        )

    def generate_until_multi_round(self, requests: list) -> list:
        raise NotImplementedError(f"{MODEL_NAME} does not implement multi-round generation")

    def generate_until(self, requests: list) -> list[str]:
        from tqdm.auto import tqdm

        from .predictors import Request

        answers: list[str] = []
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="videollama3_local")
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            built = []
            for index, instance in enumerate(batch):
                context, gen_kwargs, doc_to_visual, doc_id, task, split = instance.args[:6]
                gen_kwargs = dict(gen_kwargs or {})
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else []
                limit = int(gen_kwargs.get("max_new_tokens") or self.settings.max_new_tokens)
                built.append(
                    (
                        Request(f"{task}/{doc_id}/{start + index}", self.conversation(context, visuals), limit),
                        gen_kwargs,
                        context,
                    )
                )
            texts = self.predictor.generate([request for request, _, _ in built])
            for text, (_, gen_kwargs, context) in zip(texts, built):
                text = apply_stop_strings(text, gen_kwargs.get("until"))
                answers.append(text)
                if self.cache_hook is not None:
                    self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            progress.update(len(batch))
        progress.close()
        return answers

    # -- helpers -------------------------------------------------------------------------------------

    def conversation(self, context: str, visuals: Any) -> list[dict[str, Any]]:
        """The user turn: the task's visuals (videos, images, frame lists) then its text."""
        content = [self._visual_item(v) for v in _flatten(visuals)]
        content.append(text_item(context))
        return [{"role": "user", "content": content}]

    def _visual_item(self, visual: Any) -> dict[str, Any]:
        if isinstance(visual, (str, Path)):
            path = Path(visual)
            if path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES:
                return video_item(path, self.settings)
            return image_item(path)
        if isinstance(visual, dict) and "frames" in visual:
            return frames_item(visual["frames"], visual.get("timestamps") or list(range(len(visual["frames"]))))
        if isinstance(visual, dict) and visual.get("bytes"):
            import io

            from PIL import Image

            return image_item(Image.open(io.BytesIO(visual["bytes"])).convert("RGB"))
        return image_item(visual)  # PIL images, arrays


def _flatten(visuals: Any) -> list[Any]:
    if visuals is None:
        return []
    if isinstance(visuals, (str, Path, dict)) or not isinstance(visuals, Sequence):
        return [visuals]
    out = []
    for visual in visuals:
        out.extend(_flatten(visual) if isinstance(visual, (list, tuple)) else [visual])
    return out


def apply_stop_strings(text: str, until: Any) -> str:
    """Cut ``text`` at the first of the task's stop strings (lmms-eval's ``until``)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    for stop in stops:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text


def lmms_eval_manifest():
    """Entry point payload for lmms-eval's model registry (group ``lmms_eval.models``)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def register() -> None:
    """Register ``videollama3_local`` with an installed lmms-eval (new and old registries)."""
    try:
        from lmms_eval.api.registry import register_model
    except ImportError as exc:
        raise ImportError("lmms-eval is not installed: pip install lmms-eval") from exc
    register_model(MODEL_NAME)(VideoLLaMA3Local)
    try:
        from lmms_eval.models import MODEL_REGISTRY_V2
    except ImportError:  # lmms-eval < 0.5: the legacy registry above is the one it reads
        return
    MODEL_REGISTRY_V2.register_manifest(lmms_eval_manifest(), overwrite=True)
