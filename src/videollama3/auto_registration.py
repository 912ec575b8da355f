"""Register VideoLLaMA3 with transformers' Auto classes when they are imported, not before.

``import videollama3`` must stay cheap (no torch, no transformers), yet the official README's snippet,
``import videollama3`` followed by ``AutoModelForCausalLM.from_pretrained(path)``, must find our classes.
So :func:`install` puts a finder on ``sys.meta_path`` that watches transformers' imports and, once its
Auto modules are imported, registers our classes with them:

- ``configuration_auto``: ``AutoConfig`` learns ``videollama3_qwen2`` (our configuration module);
- ``modeling_auto``: ``AutoModelForCausalLM`` learns our model (this imports torch, as the model needs);
- ``processing_auto``: ``AutoProcessor`` learns our processor, under the official class name too.

Registering imports our classes, which import transformers' Qwen2 modules: that is only safe when no
transformers module and none of ours is half-way through its own import (they import each other, and the
Auto modules may be imported from inside ``modeling_qwen2`` or from inside one of our modules). So the
finder counts the imports of both packages in progress, and registrations wait until the outermost one
has finished. Auto modules imported before ``videollama3`` are registered with at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

_AUTO = "transformers.models.auto."


def _register_config() -> None:
    from transformers import AutoConfig

    from .model.configuration import MODEL_TYPE, VideoLLaMA3Config

    AutoConfig.register(MODEL_TYPE, VideoLLaMA3Config, exist_ok=True)


def _register_model() -> None:
    from transformers import AutoModelForCausalLM

    from .model.configuration import VideoLLaMA3Config
    from .model.modeling import VideoLLaMA3ForCausalLM

    AutoModelForCausalLM.register(VideoLLaMA3Config, VideoLLaMA3ForCausalLM, exist_ok=True)


def _register_processor() -> None:
    from .processing import register_auto_classes

    register_auto_classes()


# transformers' Auto module -> our registration with it
REGISTRATIONS: dict[str, Callable[[], None]] = {
    _AUTO + "configuration_auto": _register_config,
    _AUTO + "modeling_auto": _register_model,
    _AUTO + "processing_auto": _register_processor,
}
_WATCHED = ("transformers", "videollama3")  # packages whose imports in progress are counted
_pending: list[str] = []  # Auto modules imported and not yet registered with
_importing = 0  # modules of the watched packages being executed right now
_registering = False


def _run_pending() -> None:
    global _registering
    if _importing or _registering:
        return
    _registering = True
    try:
        while _pending:
            REGISTRATIONS[_pending.pop(0)]()
    finally:
        _registering = False


class _WatchedLoader(importlib.abc.Loader):
    """Runs the real loader while counting imports in progress; queues our registration after an Auto
    module. Every other attribute is the real loader's (get_source for tracebacks...)."""

    def __init__(self, loader: importlib.abc.Loader, fullname: str):
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global _importing
        _importing += 1
        try:
            self._loader.exec_module(module)
        finally:
            _importing -= 1
        if self._fullname in REGISTRATIONS:
            _pending.append(self._fullname)
        _run_pending()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _ImportWatcher(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WatchedLoader(spec.loader, fullname)
                return spec
        return None


_FINDER = _ImportWatcher()


def install() -> None:
    """Register now with the Auto modules already imported, and later with the others. Idempotent."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _pending.extend(name for name in REGISTRATIONS if name in sys.modules)
    _run_pending()
