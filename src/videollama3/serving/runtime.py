"""What serving needs once the checkpoint is loaded: the engine, the request preparer and defaults.

Kept apart from :mod:`.app` so that loading and the engine can be used (and tested) without FastAPI.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .cache import FeatureCache, PrefixCache
from .config import ServerConfig
from .engine import Engine
from .media import MediaResolver
from .service import GenerationDefaults, RequestPreparer

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A ``VideoLLaMA3ForCausalLM`` (eval mode, on its device) and its ``VideoLLaMA3Processor``."""

    model: Any
    processor: Any


def load_model(config: ServerConfig) -> LoadedModel:
    """Load the checkpoint and its processor on the configured device and dtype."""
    import torch

    from ..model.modeling import VideoLLaMA3ForCausalLM
    from ..processing import VideoLLaMA3Processor

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = config.torch_threads or default_torch_threads(device, config.preprocess_workers)
    if threads:
        # Process-wide. An intra-op thread that finds its core taken stalls every op of the model: the
        # other OpenMP workers spin at the op's barrier until it runs again.
        torch.set_num_threads(threads)
        logger.info("torch intra-op threads: %d", threads)
    if config.dtype == "auto":
        use_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if use_bf16 else torch.float32
    else:
        dtype = getattr(torch, config.dtype)
    model = VideoLLaMA3ForCausalLM.from_pretrained(config.model, dtype=dtype).to(device).eval()
    processor = VideoLLaMA3Processor.from_pretrained(config.model)
    return LoadedModel(model, processor)


def default_torch_threads(device: str, preprocess_workers: int) -> int | None:
    """Intra-op threads for a model on ``device`` when ``--torch-threads`` is not given (None: torch's default).

    On a CPU the model's ops share the cores with the preprocessing pool (media decoding, the processor)
    and the event loop. Torch's default, one thread per core, oversubscribes them whenever requests are
    prepared while others decode, and an op waits for its slowest thread. So the model gets the cores
    the pool does not (at least one, and no more than torch's default, which ``OMP_NUM_THREADS`` sets):
    one on a 2-core machine. GPU models keep torch's default.
    """
    import torch

    from ..processing.parallel import available_cores

    if not device.startswith("cpu"):
        return None
    return max(1, min(torch.get_num_threads(), available_cores() - preprocess_workers))


class Runtime:
    """What serving needs once the model is loaded: the engine, the request preparer and defaults."""

    def __init__(self, config: ServerConfig, loaded: LoadedModel, resolver: MediaResolver):
        model, processor = loaded.model, loaded.processor
        self.model, self.processor = model, processor  # live sessions use them (under engine.model_lock)
        self.model_name = config.model_name
        self.created = int(time.time())
        self.max_model_len = getattr(model.config, "max_position_embeddings", None)
        self.defaults = GenerationDefaults.from_generation_config(getattr(model, "generation_config", None))
        self.max_new_tokens = config.max_new_tokens
        self.engine = Engine(
            model,
            processor.tokenizer,
            max_batch_size=config.max_batch_size,
            max_prefill_tokens=config.max_prefill_tokens,
            feature_cache=FeatureCache(config.feature_cache_bytes) if config.feature_cache_bytes > 0 else None,
            prefix_cache=PrefixCache(config.prefix_cache_bytes) if config.prefix_cache_bytes > 0 else None,
            eos_token_ids=_eos_token_ids(model, processor.tokenizer),
            max_model_len=self.max_model_len,
        ).start()
        max_prompt = config.max_prompt_tokens or self.max_model_len or 2**31
        self.preparer = RequestPreparer(
            processor, resolver, max_visual_tokens=config.max_visual_tokens, max_prompt_tokens=max_prompt
        )


def _eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)  # the chat turn's end: an answer stops there even if the config names another EOS
    return ids
