"""Benchmark: live sessions (``model.live``) on the CPU with the bundled synthetic-world model.

Two measurements, in one process, on frames of the synthetic world (``videollama3.synthetic``: videos of
shapes that appear, move and change, rendered at 84 x 84; consecutive whole seconds of successive videos
are concatenated into one endless stream, so the pruner sees both static stretches and changes):

1. **Latency.** A session (``autonomous=False``, so a frame's time is its encoding and append only) fed
   ``--latency-frames`` frames at 1 fps; after every ``--ask-every`` frames a question (``session.ask``,
   greedy, ``--max-new-tokens``) is asked and read to its end. Reported: ``add_frame`` time per frame
   (median, p90, max), and per answer the time to its first text piece and its total time (median, max),
   with its tokens.
2. **Memory over a long stream.** A fresh session with the default cache bound (``max_cache_tokens`` =
   the model's ``max_position_embeddings``) fed ``--frames`` frames (default 3600: one hour of stream time
   at 1 fps) as fast as possible, a question every ``--long-ask-every`` frames. The RSS high-water mark
   (``VmHWM``) is reset after the first ``--warmup`` frames; the current RSS and the peak are printed at
   the start (after warm-up), the middle and the end, with the cache's tokens and the tokens evicted.

Usage::

    python benchmarks/bench_live.py                        # the run in docs/benchmarks.md
    python benchmarks/bench_live.py --frames 600 --latency-frames 60   # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from bench_model import reset_peak_rss, status_gb  # this folder: the scripts run as `python benchmarks/...`

QUESTIONS = [
    "What shape is in the video?",
    "What colour is the object?",
    "What happened so far?",
    "Where is the object now?",
]


def synthetic_stream(seed: int = 0):
    """Endless 1 fps frames: whole seconds of synthetic-world videos, one video after another."""
    from videollama3.synthetic.render import render_frame
    from videollama3.synthetic.world import sample_video_scene

    index = 0
    while True:
        scene = sample_video_scene(seed, index)
        for second in range(scene.duration):
            yield render_frame(scene, float(second))
        index += 1


def frame_pool(n: int, seed: int = 0) -> list[np.ndarray]:
    stream = synthetic_stream(seed)
    return [next(stream) for _ in range(n)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure_latency(model, processor, frames, args) -> dict:
    session = model.live(processor, autonomous=False)
    frame_s, first_s, total_s, tokens = [], [], [], []
    for k, frame in enumerate(frames):
        start = time.perf_counter()
        session.add_frame(frame, float(k))
        frame_s.append(time.perf_counter() - start)
        if (k + 1) % args.ask_every == 0:
            question = QUESTIONS[(k // args.ask_every) % len(QUESTIONS)]
            before = session.cache_tokens
            start = time.perf_counter()
            first = None
            for _piece in session.ask(question, max_new_tokens=args.max_new_tokens):
                if first is None:
                    first = time.perf_counter() - start
            total_s.append(time.perf_counter() - start)
            first_s.append(first if first is not None else total_s[-1])
            tokens.append(session.cache_tokens - before)
    return {
        "frames": len(frames),
        "add_frame_ms": {
            "median": 1e3 * statistics.median(frame_s[1:]),
            "p90": 1e3 * pct(frame_s[1:], 0.9),
            "max": 1e3 * max(frame_s[1:]),
            "first_frame": 1e3 * frame_s[0],
        },
        "answers": len(total_s),
        "ask_first_piece_ms": {"median": 1e3 * statistics.median(first_s), "max": 1e3 * max(first_s)},
        "ask_total_ms": {"median": 1e3 * statistics.median(total_s), "max": 1e3 * max(total_s)},
        "ask_tokens_appended_median": statistics.median(tokens),
        "cache_tokens_at_end": session.cache_tokens,
    }


def measure_memory(model, processor, frames, args) -> dict:
    session = model.live(processor, autonomous=False)
    points = {}
    marks = {args.warmup: "start", args.frames // 2: "middle", args.frames: "end"}
    evicted = 0
    answers = 0
    start = time.perf_counter()
    for k in range(args.frames):
        result = session.add_frame(frames[k % len(frames)], float(k))
        evicted += result.evicted_tokens
        if (k + 1) % args.long_ask_every == 0:
            for _ in session.ask(QUESTIONS[answers % len(QUESTIONS)], max_new_tokens=args.max_new_tokens):
                pass
            answers += 1
        if k + 1 == args.warmup:
            points["peak_reset"] = reset_peak_rss()
        if k + 1 in marks:
            points[marks[k + 1]] = {
                "frame": k + 1,
                "stream_time_s": float(k),
                "rss_gib": round(status_gb("VmRSS"), 3),
                "peak_rss_gib": round(status_gb("VmHWM"), 3),
                "cache_tokens": session.cache_tokens,
                "evicted_tokens": evicted,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            print(f"  {marks[k + 1]}: {points[marks[k + 1]]}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    return {
        "frames": args.frames,
        "answers": answers,
        "max_cache_tokens": session.max_cache_tokens,
        "wall_s": round(elapsed, 1),
        "frames_per_s": round(args.frames / elapsed, 1),
        "points": points,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: the bundled synthetic-world model)")
    parser.add_argument("--frames", type=int, default=3600, help="frames of the long stream (3600 = 1 h at 1 fps)")
    parser.add_argument("--warmup", type=int, default=20, help="frames before the peak RSS is reset")
    parser.add_argument("--latency-frames", type=int, default=120)
    parser.add_argument("--ask-every", type=int, default=10)
    parser.add_argument("--long-ask-every", type=int, default=300)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--pool", type=int, default=240, help="distinct frames rendered, cycled in the long stream")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.processing import VideoLLaMA3Processor
    from videollama3.synthetic import default_model_path

    model_dir = args.model or str(default_model_path())
    processor = VideoLLaMA3Processor.from_pretrained(model_dir)
    model = VideoLLaMA3ForCausalLM.from_pretrained(model_dir).eval()
    frames = frame_pool(max(args.pool, args.latency_frames))
    results = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "model": model_dir,
        "frame_size": list(frames[0].shape),
    }
    print("latency...", file=sys.stderr, flush=True)
    results["latency"] = measure_latency(model, processor, frames[: args.latency_frames], args)
    print(json.dumps(results["latency"], indent=1), file=sys.stderr, flush=True)
    print("long stream...", file=sys.stderr, flush=True)
    results["memory"] = measure_memory(model, processor, frames[: args.pool], args)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
