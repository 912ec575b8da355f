"""What answers the questions: a :class:`Predictor` turns a batch of conversations into responses.

:class:`ModelPredictor` runs a VideoLLaMA3 checkpoint with the package's processor (greedy decoding,
left-padded batches with different media per sample). Other backends (a server, a replay of answers
produced elsewhere, a scripted stand-in for tests) plug into the same runner through
``--predictor module:factory`` (or ``path/to/file.py:factory``); a factory is called as
``factory(model, settings, device=..., dtype=...)`` and returns an object with ``generate(requests)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .base import Conversation, EvalSettings, EvaluationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding of one request (a request without one is decoded greedily).

    ``seed`` seeds the request's own draw, so a sampled answer depends neither on its batch mates nor on
    the process that made it: :class:`ModelPredictor` runs each sampled request on its own.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    seed: int = 0


@dataclass
class Request:
    """One sample to answer: its id (for logs and scripted predictors), conversation and length limit.

    ``media_root`` is the folder relative media paths of the conversation are read from (None: the working
    directory); requests answered in one call must share it. ``sampling`` None means greedy decoding.
    """

    id: str
    conversation: Conversation
    max_new_tokens: int
    media_root: str | None = None
    sampling: Sampling | None = None


class Predictor(Protocol):
    def generate(self, requests: list[Request]) -> list[str]:
        """One response per request, in order. May raise: the runner then retries the samples one by one
        and records the ones that still fail."""
        ...


def default_device() -> str:
    """``cuda:<LOCAL_RANK>`` when CUDA is available (one GPU per torchrun process), else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str | None, device: str):
    """``auto``: bfloat16 on CUDA (the release's dtype), float32 elsewhere."""
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
        }[dtype]
    except KeyError:
        raise EvaluationError(f"unknown dtype {dtype!r} (auto, float32, bfloat16, float16)") from None


class ModelPredictor:
    """Greedy generation with a VideoLLaMA3 checkpoint and its processor.

    Args:
        model_path: checkpoint folder or hub name (either layout).
        settings: the visual-token budget comes from ``settings.max_visual_tokens``.
        device: default :func:`default_device`.
        dtype: ``auto`` / ``float32`` / ``bfloat16`` / ``float16``.
    """

    def __init__(self, model_path: str, settings: EvalSettings, device: str | None = None, dtype: str | None = None):
        import torch

        from .. import VideoLLaMA3ForCausalLM
        from ..processing import VideoLLaMA3Processor

        self.device = device or default_device()
        self.dtype = resolve_dtype(dtype, self.device)
        self.settings = settings
        self.processor = VideoLLaMA3Processor.from_pretrained(model_path)
        self.model = VideoLLaMA3ForCausalLM.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        self._torch = torch
        tokenizer = self.processor.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def generate(self, requests: list[Request]) -> list[str]:
        torch = self._torch
        if len(requests) > 1 and any(r.sampling is not None for r in requests):
            # A seeded draw must not depend on its batch mates: sampled requests run alone, greedy ones together.
            greedy = [r for r in requests if r.sampling is None]
            greedy_answers = iter(self.generate(greedy) if greedy else [])
            return [next(greedy_answers) if r.sampling is None else self.generate([r])[0] for r in requests]
        media_roots = {r.media_root for r in requests}
        if len(media_roots) > 1:
            raise EvaluationError(f"requests answered together must share one media_root, got {sorted(media_roots)}")
        conversations = [r.conversation for r in requests]
        inputs = self.processor(
            conversation=conversations if len(conversations) > 1 else conversations[0],
            add_system_prompt=True,
            add_generation_prompt=True,
            return_tensors="pt",
            max_tokens=self.settings.max_visual_tokens,
            media_root=media_roots.pop(),
        )
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in dict(inputs).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        limits = [r.max_new_tokens for r in requests]
        sampling = requests[0].sampling
        if sampling is None:
            # The checkpoint's generation config may hold sampling parameters: greedy ignores them.
            decoding = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            decoding = {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": sampling.top_k,
            }
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output_ids = self.model.generate(
                **inputs, max_new_tokens=max(limits), pad_token_id=self.pad_token_id, **decoding
            )
        # Decoding of one row does not depend on the others, so a shorter limit is a prefix.
        rows = [ids[:limit] for ids, limit in zip(output_ids.tolist(), limits)]
        return [text.strip() for text in self.processor.batch_decode(rows, skip_special_tokens=True)]


def load_factory(spec: str):
    """``module:attr`` or ``path/to/file.py:attr`` -> the attribute (a class or a function)."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise EvaluationError(f"--predictor must look like module:factory or file.py:factory, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise EvaluationError(f"--predictor file not found: {path}")
        name = f"_videollama3_predictor_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EvaluationError(f"{target} has no attribute {attr!r}") from None


def build_predictor(
    model: str, settings: EvalSettings, spec: str | None = None, device: str | None = None, dtype: str | None = None
) -> Any:
    """The predictor the CLI asked for (the model itself unless ``spec`` names another factory)."""
    if spec:
        return load_factory(spec)(model, settings, device=device, dtype=dtype)
    return ModelPredictor(model, settings, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Answering a batch (the evaluation runner and batch inference)
# --------------------------------------------------------------------------------------------------


def format_error(exc: BaseException) -> str:
    """How a failed sample records its error: ``"<ExceptionType>: <message>"``."""
    return f"{type(exc).__name__}: {exc}"


def answer_requests(predictor: Predictor, requests: list[Request]) -> list[tuple[str | None, str | None]]:
    """(response, error) per request. A failing batch is retried one sample at a time, so one bad
    sample does not fail its batch mates."""
    if not requests:
        return []
    try:
        responses = predictor.generate(requests)
        if len(responses) != len(requests):
            raise EvaluationError(f"the predictor returned {len(responses)} responses for {len(requests)} requests")
        return [(str(r), None) for r in responses]
    except Exception as exc:
        _free_accelerator_memory()
        if len(requests) == 1:
            logger.warning("sample %s failed: %s", requests[0].id, format_error(exc))
            return [(None, format_error(exc))]
    return [result for request in requests for result in answer_requests(predictor, [request])]


def _free_accelerator_memory() -> None:
    # After an out-of-memory error the cached blocks of the failed batch would stay reserved.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
