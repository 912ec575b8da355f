"""Threads for preprocessing: how many, and two helpers that run decoding and resizing side by side.

Thread counts default to the cores this process may use; environment variables override them:

- ``VIDEOLLAMA3_DECODE_WORKERS``: independent decoders a long video is split across (1: one pass);
- ``VIDEOLLAMA3_DECODE_THREADS``: threads of each (single) decoder (0: libavcodec's own choice);
- ``VIDEOLLAMA3_RESIZE_THREADS``: threads resizing and patchifying decoded frames.

Decoding (libavcodec), resizing (Pillow) and NumPy all release the GIL, so plain threads use the cores.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_workers() -> int:
    """Independent decoders a long video is split across (one per core, each over its own keyframe-started
    stretch of the video); ``VIDEOLLAMA3_DECODE_WORKERS`` overrides, 1 decodes in one pass."""
    return _count_from_env("VIDEOLLAMA3_DECODE_WORKERS", available_cores(), minimum=1)


def decoder_threads() -> int:
    """Threads of one decoder: all cores but one (the resizing thread's), at least 1;
    ``VIDEOLLAMA3_DECODE_THREADS`` overrides (0 lets libavcodec choose)."""
    return _count_from_env("VIDEOLLAMA3_DECODE_THREADS", max(available_cores() - 1, 1), minimum=0)


def resize_threads() -> int:
    """Threads resizing decoded frames: one per core; ``VIDEOLLAMA3_RESIZE_THREADS`` overrides."""
    return _count_from_env("VIDEOLLAMA3_RESIZE_THREADS", available_cores(), minimum=1)


def _count_from_env(variable: str, default: int, minimum: int) -> int:
    """``int(os.environ[variable])`` (at least ``minimum``) when set and not empty, else ``default``."""
    override = os.environ.get(variable)
    if override:
        return max(int(override), minimum)
    return default


def parallel_map(function, items: Iterator[tuple[int, Any]], threads: int) -> None:
    """``function(*item)`` for every item on ``threads`` threads, at most ``2 * threads`` items in flight
    (each holds a full-size frame). The first error is raised once the items in flight have finished."""
    if threads <= 1:
        for item in items:
            function(*item)
        return
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="videollama3-resize") as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, *item))
                while len(pending) >= 2 * threads:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def prefetched(*iterators: Iterator, depth: int = 2) -> Iterator:
    """Run each iterator in a background thread, together at most ``depth`` items ahead; yield their items
    as they come (in order within an iterator, interleaved across them).

    Decoding (libavcodec) and resizing (Pillow) both release the GIL, so the next frames decode while
    this one is resized; the bounded queue keeps at most ``depth + 2`` full-size frames per iterator alive.
    The first error of any iterator is raised here, after the others have been stopped.
    """
    q: queue.Queue = queue.Queue(maxsize=depth * len(iterators))
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():  # the consumer may have gone away (an error, or it stopped early)
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))

    threads = [threading.Thread(target=work, args=(it,), name="videollama3-decode", daemon=True) for it in iterators]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for iterator in iterators:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # the worker has returned: closing the generator closes the video file now
