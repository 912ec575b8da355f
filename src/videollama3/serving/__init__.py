"""OpenAI-compatible serving of VideoLLaMA3: ``videollama3 serve --model DIR`` (see docs/serving.md).

- :mod:`.app`: the FastAPI app (routes, front door, web page, background model loading);
- :mod:`.engine`: continuous batching on one scheduler thread that owns the model;
- :mod:`.service`: OpenAI requests -> processor conversations and sampling options;
- :mod:`.media`: where media may come from (data URLs, uploads, the media root, remote) and limits;
- :mod:`.cache`: the visual-feature cache (a media item is encoded once across turns and requests).

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
