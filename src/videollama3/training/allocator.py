"""The memory allocator of a CPU training process: jemalloc when the machine has it.

Under glibc's malloc the resident memory of a CPU training process grows step after step (1 GB to 5.4 GB
over the synthetic recipe) and its steps slow down with it; with jemalloc memory stays flat and the
synthetic recipe takes 25 instead of 30 minutes (docs/benchmarks.md, "Training"). glibc's own settings do
not help, and an allocator can only be chosen before the process starts, so ``videollama3 train``
re-executes itself once with jemalloc in ``LD_PRELOAD``, as PyTorch's own CPU launcher
(``torch.backends.xeon.run_cpu --enable-jemalloc``) does.

``VIDEOLLAMA3_ALLOCATOR`` chooses: ``auto`` (default: jemalloc on Linux CPU training when it is installed,
else the system's), ``jemalloc`` (required: an error when it is not installed) or ``system`` (never switch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError

ALLOCATOR_ENV = "VIDEOLLAMA3_ALLOCATOR"
CHOICES = ("auto", "jemalloc", "system")
# Where distributions install it: Debian / Ubuntu (libjemalloc2, per architecture), Fedora / RHEL, source builds.
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def allocator_choice(environ: Mapping[str, str] = os.environ) -> str:
    """The ``VIDEOLLAMA3_ALLOCATOR`` setting (``auto`` when unset); a ConfigError for any other value."""
    choice = environ.get(ALLOCATOR_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"{ALLOCATOR_ENV}={environ[ALLOCATOR_ENV]!r}: expected one of {', '.join(CHOICES)}")
    return choice


def find_jemalloc(candidates: Sequence[str] | None = None) -> str | None:
    """The first installed jemalloc shared library among ``candidates`` (default: JEMALLOC_PATHS), or None."""
    return next((path for path in candidates or JEMALLOC_PATHS if Path(path).is_file()), None)


def jemalloc_environment(
    uses_accelerator: bool,
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
    candidates: Sequence[str] | None = None,
) -> dict[str, str] | None:
    """The environment to re-execute this process in with jemalloc, or None to keep the running allocator.

    ``uses_accelerator``: the process trains on a GPU (measured only on CPU, so ``auto`` leaves GPU runs
    alone). Raises ConfigError when jemalloc is required but missing or not possible here."""
    choice = allocator_choice(environ)
    candidates = candidates or JEMALLOC_PATHS
    if choice == "system" or "jemalloc" in environ.get("LD_PRELOAD", ""):
        return None  # asked not to, or already preloaded (also what stops a second re-execution)
    if choice == "auto" and (platform != "linux" or uses_accelerator):
        return None
    if platform != "linux":
        raise ConfigError(f"{ALLOCATOR_ENV}=jemalloc: preloading jemalloc is supported on Linux only, not {platform}")
    library = find_jemalloc(candidates)
    if library is None:
        if choice == "auto":
            return None
        raise ConfigError(
            f"{ALLOCATOR_ENV}=jemalloc: no jemalloc library found (looked for {', '.join(candidates)}); "
            "install it (Debian / Ubuntu: apt install libjemalloc2) or unset the variable"
        )
    preload = environ.get("LD_PRELOAD", "")
    return {**environ, "LD_PRELOAD": f"{library}:{preload}" if preload else library}


def reexec_with_jemalloc(argv: Sequence[str], uses_accelerator: bool) -> None:
    """Replace this process by ``python -m videollama3 *argv`` with jemalloc preloaded, when
    :func:`jemalloc_environment` says so; return otherwise. Only for a process started as the CLI: the
    process image is replaced, so nothing after this call runs in the current one."""
    environment = jemalloc_environment(uses_accelerator)
    if environment is None:
        return
    print(
        f"videollama3: restarting with jemalloc ({environment['LD_PRELOAD'].split(':')[0]}) for faster CPU "
        f"training; {ALLOCATOR_ENV}=system keeps the system allocator",
        file=sys.stderr,
        flush=True,
    )
    os.execve(sys.executable, [sys.executable, "-m", "videollama3", *argv], environment)
