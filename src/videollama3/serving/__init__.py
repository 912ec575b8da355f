"""OpenAI-compatible serving of VideoLLaMA3: ``videollama3 serve --model DIR`` (see docs/serving.md).

- :mod:`.app`: the FastAPI app (routes, web page, background model loading), :mod:`.front_door` (shared state,
  API key and body limits), :mod:`.completion` (a completion in flight, JSON or server-sent events),
  :mod:`.api_errors` (errors in OpenAI's shape);
- :mod:`.service`: OpenAI requests -> processor conversations and sampling options;
- :mod:`.media`: where media may come from (data URLs, uploads, the media root, remote) and limits;
- :mod:`.engine`: continuous batching on one scheduler thread that owns the model, with :mod:`.types`
  (requests, prompts, events), :mod:`.scheduler` (batches and where a new sequence goes),
  :mod:`.prompt_inputs` (visual features into prompt embeddings), :mod:`.kv_cache` (batch KV caches),
  :mod:`.sampling` and :mod:`.detokenizer` (incremental text, stop strings);
- :mod:`.cache`: the visual-feature and prompt-prefix caches (a media item is encoded once across turns
  and requests).

Importing this package does not import FastAPI; :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ServerConfig

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(config: ServerConfig, **kwargs) -> FastAPI:
    """The FastAPI app serving ``config.model`` (see :func:`videollama3.serving.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(config, **kwargs)


__all__ = ["ServerConfig", "create_app"]
