"""Processes: the ``torchrun`` process group and the collectives training, evaluation and batch inference use.

Launch with ``torchrun`` (single node: ``torchrun --nproc-per-node 8 -m videollama3 train|eval|infer ...``;
multi-node: add ``--nnodes N --node-rank R --rdzv-endpoint HOST:PORT``). torchrun describes each process in
the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without it a job runs in one process and every
collective below is an identity.

Two ways to join (:func:`init_distributed`):

- training (the default): the process takes ``cuda:<LOCAL_RANK>`` when CUDA is available and the group is
  NCCL on CUDA, gloo on CPU; tensors (:func:`all_reduce`) and objects travel through it.
- ``objects_only`` (evaluation, batch inference): only Python objects travel (records, statuses), through a
  gloo group: the default group when this call creates it, else a gloo subgroup of the existing one. The
  device is left to the model (see :func:`videollama3.evaluation.predictors.default_device`).

Every collective has the group's timeout, so a rank that died without a word makes the others fail instead
of hang; :func:`run_checked` makes all ranks fail together when one of them raised.
"""

from __future__ import annotations

import datetime
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 60 * 60  # training: seconds a collective waits for the slowest rank


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job. ``DistEnv()`` is a single process on the CPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    object_group: Any = field(default=None, repr=False)  # the group of object collectives (None: the default)
    owns_group: bool = False  # init_distributed created the default group: close() destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        """Leave the process group, if :func:`init_distributed` created it (else it is the caller's)."""
        if self.owns_group:
            destroy_distributed()


def init_distributed(timeout_s: float = DEFAULT_TIMEOUT_S, *, objects_only: bool = False) -> DistEnv:
    """Join the process group that torchrun describes, or run alone (``WORLD_SIZE`` unset or 1).

    Args:
        timeout_s: how long every collective waits for the other ranks.
        objects_only: only object collectives (gloo, no device chosen); see the module docstring.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu") if objects_only else _training_device(local_rank)
    if world_size <= 1:
        return DistEnv(local_rank=local_rank, device=device)
    timeout = datetime.timedelta(seconds=timeout_s)
    owns_group, object_group = False, None
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timeout, device_id=device if backend == "nccl" else None)
        owns_group = True
    elif objects_only and dist.get_backend() != "gloo":
        object_group = dist.new_group(backend="gloo", timeout=timeout)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, object_group, owns_group)


def destroy_distributed() -> None:
    """Leave the default process group, whoever created it."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _training_device(local_rank: int) -> torch.device:
    """``cuda:<LOCAL_RANK>`` (made current) when CUDA is available, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        from .errors import ConfigError

        raise ConfigError(
            f"process with LOCAL_RANK={local_rank} has no GPU: {visible} visible on this node "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at most {visible} "
            "processes per node (torchrun --nproc-per-node), or hide the GPUs (CUDA_VISIBLE_DEVICES='') to "
            "train on the CPU"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


# --------------------------------------------------------------------------------------------------
# Collectives (identities in a single process)
# --------------------------------------------------------------------------------------------------


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce(values: Sequence[float], env: DistEnv, op: str = "sum") -> list[float]:
    """Element-wise sum or max of a few numbers over all ranks (one collective, float64)."""
    if not env.distributed:
        return [float(v) for v in values]
    device = env.device if env.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_object(obj: Any, env: DistEnv, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj if env.rank == src else None]
    dist.broadcast_object_list(box, src=src, group=env.object_group)
    return box[0]


def all_gather_object(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj, group=env.object_group)
    return out


def gather_object(obj: Any, env: DistEnv) -> list[Any] | None:
    """``obj`` of every rank, in rank order, on rank 0 (None elsewhere)."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size if env.rank == 0 else None
    dist.gather_object(obj, out, dst=0, group=env.object_group)
    return out


def run_checked(env: DistEnv, what: str, fn: Callable[[], Any], error_type: type[Exception]) -> Any:
    """Run ``fn`` on this rank, then fail on all ranks together if it failed on any.

    In a single process the original exception is raised; with several, every rank raises ``error_type``
    naming ``what`` and the ranks that failed (this rank's exception as its cause).
    """
    error, result = None, None
    try:
        result = fn()
    except Exception as exc:  # shared with the other ranks below, then raised
        if env.distributed:
            traceback.print_exc(file=sys.stderr)
        error = exc
    message = None if error is None else f"{type(error).__name__}: {error}"
    failed = [(rank, m) for rank, m in enumerate(all_gather_object(message, env)) if m is not None]
    if failed:
        if error is not None and not env.distributed:
            raise error
        details = "; ".join(f"rank {rank}: {m}" for rank, m in failed)
        raise error_type(f"{what} failed on {len(failed)} of {env.world_size} processes: {details}") from error
    return result
