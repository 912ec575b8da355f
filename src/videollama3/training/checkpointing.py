"""Resumable checkpoints and the final model.

Intermediate checkpoints (``STAGE/checkpoints/step-00001000/``) hold everything needed to continue
exactly where the run stopped:

- ``state/``: model and optimizer state via ``torch.distributed.checkpoint`` (each rank writes its own
  FSDP shards; frozen parameters are left out, they are re-read from the stage's starting checkpoint);
- ``scheduler.pt``, ``trainer_state.json`` (step, skipped-sample counts, metrics so far);
- ``rng/rank-N.pt``: Python, NumPy, torch (and CUDA) RNG states of every rank.

The data position is the step number: the sample order is a function of the seed (``data.SampleOrder``).

Every save is atomic: files are written into a temporary folder that is renamed (``os.replace``) into
place once complete, so an interrupted save never leaves a checkpoint that looks valid. Only the newest
``keep_last`` checkpoints are kept. The final model is written to ``STAGE/final/`` in the official release
layout with the processor files, loadable by ``from_pretrained``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..distributed import DistEnv, barrier, broadcast_object

STEP_DIR = re.compile(r"^step-(\d+)$")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` (an existing one is removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    """Silence torch.distributed.checkpoint's notice that it runs without a process group (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Save / find / load the resumable checkpoints of one stage.

    Args:
        folder: ``STAGE/checkpoints``.
        keep_last: how many checkpoints to keep (older ones are deleted after a successful save).
        env: the process layout (every rank writes its shards; rank 0 renames and prunes).
    """

    def __init__(self, folder: str | os.PathLike, keep_last: int, env: DistEnv):
        self.folder = Path(folder)
        self.keep_last = max(1, keep_last)
        self.env = env

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
        if not self.folder.is_dir():
            return []
        found = [(int(m[1]), p) for p in self.folder.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        done = self.checkpoints()
        return done[-1] if done else None

    def save(self, step: int, model: nn.Module, optimizer, scheduler, trainer_state: dict) -> Path:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        final = self.folder / f"step-{step:08d}"
        # One temporary name for all ranks (rank 0 picks it), so the shards land in the same folder.
        tmp = broadcast_object(str(self.folder / f".step-{step:08d}.tmp-{os.getpid()}"), self.env)
        tmp = Path(tmp)
        if self.env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "rng").mkdir(parents=True)
        barrier(self.env)
        model_state, optim_state = get_state_dict(model, optimizer, options=StateDictOptions(ignore_frozen_params=True))
        with _single_process_ok():
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / "state"))
        torch.save(rng_state(), tmp / "rng" / f"rank-{self.env.rank}.pt")
        barrier(self.env)
        if self.env.is_main:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "step": step}, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.env)
        return final

    def load(self, path: str | os.PathLike, model: nn.Module, optimizer, scheduler) -> dict:
        """Restore model, optimizer, scheduler and this rank's RNG; return the trainer state."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

        path = Path(path)
        options = StateDictOptions(ignore_frozen_params=True)
        model_state, optim_state = get_state_dict(model, optimizer, options=options)
        state = {"model": model_state, "optim": optim_state}
        with _single_process_ok():
            dcp.load(state, checkpoint_id=str(path / "state"))
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=options
        )
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        rng_file = path / "rng" / f"rank-{self.env.rank}.pt"
        if rng_file.is_file():  # absent when resuming with more ranks than were saved
            set_rng_state(torch.load(rng_file, weights_only=False))
        return json.loads((path / "trainer_state.json").read_text())


def gather_full_state_dict(module: nn.Module, env: DistEnv) -> dict[str, torch.Tensor]:
    """Full (unsharded) state dict of ``module`` on CPU; a collective under FSDP (every rank must call)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options)


def copy_processor_files(source: str | os.PathLike, folder: Path) -> None:
    """Copy tokenizer / processor / generation config files from a checkpoint folder (those it has)."""
    from ..model.layouts import PROCESSOR_FILES

    source = Path(source)
    for name in PROCESSOR_FILES:
        if (source / name).is_file() and not (folder / name).exists():
            shutil.copy2(source / name, folder / name)


def save_final_model(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    output_dir: str | os.PathLike,
    processor_source: str | os.PathLike,
    dtype: torch.dtype,
) -> Path:
    """Write a ``VideoLLaMA3ForCausalLM`` in the official layout, atomically, with its processor files.

    Args:
        model: the (possibly sharded) model; its config and generation config are written.
        state_dict: its full state dict (see :func:`gather_full_state_dict`).
        processor_source: checkpoint folder whose tokenizer and processor files are copied.
    """
    state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    if model.config.tie_word_embeddings:
        # A gathered (FSDP) state dict holds the tied head as a separate copy; the release layout omits it.
        state_dict.pop("lm_head.weight", None)
    with atomic_directory(output_dir) as tmp:
        model.config.use_cache = True
        model.save_pretrained(tmp, state_dict=state_dict)
        # save_pretrained records the dtype of the live (fp32 master) weights; declare the saved ones.
        config_file = tmp / "config.json"
        config = json.loads(config_file.read_text())
        config["dtype"] = str(dtype).removeprefix("torch.")
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        copy_processor_files(processor_source, tmp)
    return Path(output_dir)
