"""A local folder for a checkpoint name: a folder on disk, or a Hugging Face Hub repo id (``owner/name``).

One resolver, used by the model (:mod:`videollama3.model.layouts`) and the processor. Hub repo ids resolve
through huggingface_hub's cache as transformers does: the cached snapshot if there is one, else a
download of the files that are needed, unless downloads are off (``local_files_only=True`` or
``HF_HUB_OFFLINE`` set). Every failure is a :class:`CheckpointError` that names the input and the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import CheckpointError

# Files of a checkpoint that the processor needs (tokenizer, configs, chat template): no weights.
PROCESSOR_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
CHECKPOINT_FILE_PATTERNS = (*PROCESSOR_FILE_PATTERNS, "*.safetensors")

# Keyword arguments of ``from_pretrained`` that only say where files come from (or ask for remote code,
# which is never used): they go to the resolver, not to the class being loaded.
HUB_KWARGS = frozenset(
    {
        "cache_dir",
        "force_download",
        "proxies",
        "token",
        "revision",
        "local_files_only",
        "subfolder",
        "trust_remote_code",
        "_from_auto",
        "_from_pipeline",
        "user_agent",
        "repo_type",
        "code_revision",
    }
)

_REPO_ID = re.compile(r"[\w.\-]+/[\w.\-]+")


# The file that marks a folder as the trained part of a model on a base LLM (videollama3.synthetic.bundle).
TRAINED_PART_INFO = "trained_part.json"


def pop_hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the :data:`HUB_KWARGS` of ``kwargs``."""
    return {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_KWARGS}


def offline() -> bool:
    """Whether downloads are off (``HF_HUB_OFFLINE``), read now rather than when huggingface_hub was imported."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.upper() in constants.ENV_VARS_TRUE_VALUES


def resolve_folder(
    name_or_path: str | os.PathLike,
    *,
    patterns: Sequence[str] = CHECKPOINT_FILE_PATTERNS,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    subfolder: str | None = None,
    **_ignored: Any,
) -> Path:
    """The local folder of ``name_or_path`` (and its ``subfolder``); for the trained part of a model on a base
    LLM (the bundled model's folder, :mod:`videollama3.synthetic.bundle`), the assembled checkpoint's.

    Args:
        name_or_path: a folder (``~`` expanded), or a Hub repo id ``owner/name`` that is not a folder here.
        patterns: the files of a Hub repo to download when it is not cached (default: configs, tokenizer
            and safetensors weights; :data:`PROCESSOR_FILE_PATTERNS` for the processor alone).
        revision, cache_dir, token: as in ``huggingface_hub.snapshot_download``.
        local_files_only: never download (as ``HF_HUB_OFFLINE``).
        subfolder: a folder inside the checkpoint.
        _ignored: other :data:`HUB_KWARGS` (``force_download``, ``proxies``, ``trust_remote_code``...).

    Raises:
        CheckpointError: the path is a file; or no such folder and not a valid repo id; or the repo is not
            cached and downloads are off; or the download failed; or ``subfolder`` is missing.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        folder = _subfolder(path, subfolder, name_or_path)
        if (folder / TRAINED_PART_INFO).is_file():  # a model shipped as its trained part: assembled on first use
            from .synthetic.bundle import assemble

            return assemble(folder)
        return folder
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint folder, found a file")
    name = str(name_or_path)
    if not _is_repo_id(name):
        raise CheckpointError(f"{name}: no such folder, and not a Hugging Face Hub model id (owner/name)")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if subfolder:
        patterns = [f"{subfolder}/{pattern}" for pattern in patterns]
    kwargs = dict(repo_id=name, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=list(patterns))
    try:
        return _subfolder(Path(snapshot_download(local_files_only=True, **kwargs)), subfolder, name)
    except (LocalEntryNotFoundError, FileNotFoundError):
        pass  # not cached
    if local_files_only or offline():
        reason = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        label = name if revision is None else f"{name} (revision {revision})"
        raise CheckpointError(
            f"{label}: no such folder, and not in the Hugging Face cache; {reason}, so nothing is downloaded and "
            f"it is not in the local Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE}). Download it "
            f"first (`hf download {name}`) or pass a local folder"
        )
    try:
        folder = Path(snapshot_download(**kwargs))
    except Exception as exc:  # network, authentication, no such repo or revision: one clear message
        raise CheckpointError(
            f"{name}: not in the Hugging Face cache, and the download failed ({type(exc).__name__}: {exc})"
        ) from exc
    return _subfolder(folder, subfolder, name)


def resolve_processor_folder(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> Path:
    """:func:`resolve_folder` for the processor: a Hub repo's tokenizer and config files, never its weights."""
    return resolve_folder(name_or_path, patterns=PROCESSOR_FILE_PATTERNS, **hub_kwargs)


def read_optional_json(path: Path) -> dict | None:
    """A JSON file of a checkpoint folder, or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from exc


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not _REPO_ID.fullmatch(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _subfolder(folder: Path, subfolder: str | None, name: str | os.PathLike) -> Path:
    if not subfolder:
        return folder
    if not (folder / subfolder).is_dir():
        raise CheckpointError(f"{name}: no subfolder {subfolder!r} in {folder}")
    return folder / subfolder
