"""Register VideoLLaMA3 with transformers' Auto classes when they are imported, not before.

``import videollama3`` must stay cheap (no torch, no transformers), yet the official README's snippet,
``import videollama3`` followed by ``AutoModelForCausalLM.from_pretrained(path)``, must find our classes.
So :func:`install` puts a finder on ``sys.meta_path`` that lets transformers import its three Auto
modules as usual and then registers our classes with each, right after it has run:

- ``configuration_auto``: ``AutoConfig`` learns ``videollama3_qwen2`` (our configuration module);
- ``modeling_auto``: ``AutoModelForCausalLM`` learns our model (this imports torch, as the model needs);
- ``processing_auto``: ``AutoProcessor`` learns our processor, under the official class name too.

Auto modules imported before ``videollama3`` are registered with at once.
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

    from .configuration import MODEL_TYPE, VideoLLaMA3Config

    AutoConfig.register(MODEL_TYPE, VideoLLaMA3Config, exist_ok=True)


def _register_model() -> None:
    from transformers import AutoModelForCausalLM

    from .configuration import VideoLLaMA3Config
    from .modeling import VideoLLaMA3ForCausalLM

    AutoModelForCausalLM.register(VideoLLaMA3Config, VideoLLaMA3ForCausalLM, exist_ok=True)


def _register_processor() -> None:
    from .processing import register_auto_classes

    register_auto_classes()


# transformers' Auto module -> (our module whose classes it learns, registration)
REGISTRATIONS: dict[str, tuple[str, Callable[[], None]]] = {
    _AUTO + "configuration_auto": ("videollama3.configuration", _register_config),
    _AUTO + "modeling_auto": ("videollama3.modeling", _register_model),
    _AUTO + "processing_auto": ("videollama3.processing", _register_processor),
}
_ready: set[str] = set()  # our modules above that have finished importing (see module_ready)


def _registration(auto_module: str) -> Callable[[], None]:
    ours, register = REGISTRATIONS[auto_module]

    def register_when_possible() -> None:
        # One of our modules half-way through its own import (it imports transformers, which imported
        # the Auto module) cannot be imported again here: it registers itself when done (module_ready).
        if ours in sys.modules and ours not in _ready:
            return
        register()

    return register_when_possible


def module_ready(name: str) -> None:
    """Called at the end of our modules' import: register with an Auto module already imported."""
    _ready.add(name)
    _pending.extend(
        register for auto, (ours, register) in REGISTRATIONS.items() if ours == name and auto in sys.modules
    )
    _run_pending()


# Registering imports our classes, which import transformers' Qwen2 modules, which need the Auto modules
# complete: so registrations wait until no Auto module is half-imported and run one at a time, in order.
_pending: list[Callable[[], None]] = []
_importing = 0  # Auto modules being executed right now (they import each other)
_registering = False


def _run_pending() -> None:
    global _registering
    if _importing or _registering:
        return
    _registering = True
    try:
        while _pending:
            _pending.pop(0)()
    finally:
        _registering = False


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then our registration; every other attribute is the real loader's."""

    def __init__(self, loader: importlib.abc.Loader, register: Callable[[], None]):
        self._loader = loader
        self._register = register

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global _importing
        _importing += 1
        try:
            self._loader.exec_module(module)
        finally:
            _importing -= 1
        _pending.append(self._register)
        _run_pending()

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for tracebacks and inspect
        return getattr(self._loader, name)


class _AutoClassFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in REGISTRATIONS:
            return None
        register = _registration(fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, register)
                return spec
        return None


_FINDER = _AutoClassFinder()


def install() -> None:
    """Register now with the Auto modules already imported, and later with the others. Idempotent."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _pending.extend(_registration(name) for name in REGISTRATIONS if name in sys.modules)
    _run_pending()
