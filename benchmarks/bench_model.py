"""Benchmark: our ``VideoLLaMA3ForCausalLM`` against transformers' native ``VideoLlama3ForConditionalGeneration``.

Both models get the same random weights at the real VideoLLaMA3-2B widths (SigLIP-so400m vision encoder:
1152 / 4304 / 16 heads / patch 14; Qwen2.5-1.5B LLM: 1536 / 8960 / 12 heads / 2 KV heads / vocab 151936,
tied head) and the same video (``--frames`` frames of 336 x 196 pixels: a 14 x 24 patch grid, merge size 2,
so 84 visual tokens per frame) inside a short random text prompt. Ours gets official-style inputs (one
``<image>`` id per visual token, ``grid_sizes``, ``merge_sizes``, an all-True ``compression_mask``); the
native model gets ``pixel_values_videos``, ``video_grid_thw``, ``video_merge_sizes`` and ``video_token_id``
placeholders. The native checkpoint is made with ``videollama3.model.layouts.convert_checkpoint(to="hf")``.

Measured per implementation and number of frames, each in a fresh subprocess (so peak RSS is that of one
measurement): (1) the vision encoder alone (ours ``model.model.vision_encoder``, native
``model.model.vision_model``; both without the projector), (2) a full prefill (one forward over the whole
prompt with a KV cache; ``logits_to_keep=1`` for ours, the native forward has no such argument and computes
the logits of every position). Times are the median of ``--reps`` runs after one warm-up, under
``torch.inference_mode`` with ``--threads`` threads. Peak RSS is the RSS high-water mark (``VmHWM``, the
process's own part of ``ru_maxrss``), reset through ``/proc/self/clear_refs`` once the model (weights paged
in) and the inputs were loaded, so it is the peak of the measurement
itself; "increase" is that peak minus the RSS after loading. A separate check process runs both models on
the smallest video and reports the max abs difference of their logits (and vision features).

The full depths (27 vision, 28 LLM layers) are the defaults. On a small CPU without native bf16 matmuls a
single bf16 60-frame prefill takes many minutes, so the documented run uses fewer layers at the real widths
(``--vision-layers`` / ``--llm-layers``): per-layer cost and activation memory do not depend on depth.

Usage::

    python benchmarks/bench_model.py                       # full depth, bf16, 8 and 60 frames
    python benchmarks/bench_model.py --dtype float32 --vision-layers 2 --llm-layers 2 \\
        --frames 8 30 60 --native-frames 8 60 --reps 2    # the run in docs/benchmarks.md
    python benchmarks/bench_model.py --dtype float32 --vision-layers 2 --llm-layers 2 \\
        --ab --frames 60 --reps 4       # both vision encoders in one process, calls alternating
    python benchmarks/bench_model.py --dtype float32 --vision-layers 2 --llm-layers 2 \\
        --worker ours --phase vision --frames 60 --reps 1 --profile   # torch.profiler op table

Checkpoints are written once under ``--workdir`` (default ``/tmp/videollama3_bench``) and reused by later
runs with the same settings; results go to ``<workdir>/results-<timestamp>.json`` and are printed as a
Markdown table. Internal flags (``--worker``, ``--phase``, ``--check``) run one measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HEIGHT, WIDTH, PATCH, MERGE = 196, 336, 14, 2
VIDEO_TOKEN_ID = 151656  # Qwen's <|video_pad|>; differs from the <image> id 151665
PROMPT_PREFIX, PROMPT_SUFFIX = 24, 16  # random text tokens around the video
SEED = 0


# ---------------------------------------------------------------------------- models and inputs
def build_config(vision_layers: int, llm_layers: int):
    from videollama3 import VideoLLaMA3Config

    return VideoLLaMA3Config(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=llm_layers,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        use_token_compression=False,
        vision_encoder_config={
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 16,
            "patch_size": PATCH,
        },
    )


def checkpoint_dirs(args) -> tuple[Path, Path]:
    tag = f"{args.dtype}-v{args.vision_layers}-l{args.llm_layers}-s{SEED}"
    root = Path(args.workdir) / tag
    return root / "ours", root / "hf"


def prepare_checkpoints(args) -> tuple[Path, Path, float]:
    """Random-init our model, save it (official layout) and convert it to transformers' layout."""
    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.model.layouts import convert_checkpoint

    ours, hf = checkpoint_dirs(args)
    if (ours / "config.json").is_file() and (hf / "config.json").is_file():
        return ours, hf, 0.0
    start = time.perf_counter()
    torch.manual_seed(SEED)
    model = VideoLLaMA3ForCausalLM(build_config(args.vision_layers, args.llm_layers)).to(getattr(torch, args.dtype))
    ours.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(ours)
    del model
    gc.collect()
    convert_checkpoint(ours, hf, to="hf", video_token_id=VIDEO_TOKEN_ID)
    return ours, hf, time.perf_counter() - start


def load_model(impl: str, args):
    dtype = getattr(torch, args.dtype)
    ours, hf = checkpoint_dirs(args)
    if impl == "ours":
        from videollama3 import VideoLLaMA3ForCausalLM

        model = VideoLLaMA3ForCausalLM.from_pretrained(ours, dtype=dtype)
        model.set_vision_attention_backend(args.vision_attention)
    else:
        from transformers import VideoLlama3ForConditionalGeneration

        model = VideoLlama3ForConditionalGeneration.from_pretrained(hf, dtype=dtype, attn_implementation="sdpa")
    return model.to(args.device).eval()


def to_device(inputs: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def make_inputs(impl: str, frames: int, image_token_id: int) -> dict:
    """The same video and prompt for both implementations, in each one's format."""
    gen = torch.Generator().manual_seed(SEED)
    gh, gw = HEIGHT // PATCH, WIDTH // PATCH
    pixel_values = torch.randn(frames * gh * gw, 3 * PATCH * PATCH, generator=gen)
    n_tokens = frames * (gh // MERGE) * (gw // MERGE)
    text = torch.randint(0, 151643, (PROMPT_PREFIX + PROMPT_SUFFIX,), generator=gen)
    placeholder = image_token_id if impl == "ours" else VIDEO_TOKEN_ID
    input_ids = torch.cat([text[:PROMPT_PREFIX], torch.full((n_tokens,), placeholder), text[PROMPT_PREFIX:]]).unsqueeze(
        0
    )
    grid = torch.tensor([[frames, gh, gw]])
    merge = torch.tensor([MERGE])
    common = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "use_cache": True}
    if impl == "ours":
        return {
            **common,
            "pixel_values": pixel_values,
            "grid_sizes": grid,
            "merge_sizes": merge,
            "compression_mask": torch.ones(n_tokens, dtype=torch.bool),
        }
    return {**common, "pixel_values_videos": pixel_values, "video_grid_thw": grid, "video_merge_sizes": merge}


def vision_call(impl: str, model, inputs: dict):
    if impl == "ours":
        return lambda: model.model.vision_encoder(inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"])
    return lambda: (
        model.model.vision_model(
            pixel_values=inputs["pixel_values_videos"],
            grid_thw=inputs["video_grid_thw"],
            merge_sizes=inputs["video_merge_sizes"],
        ).last_hidden_state
    )


def prefill_call(impl: str, model, inputs: dict, logits_to_keep: int = 1):
    if impl == "ours":
        return lambda: model(**inputs, logits_to_keep=logits_to_keep).logits
    return lambda: model(**inputs).logits  # no logits_to_keep: logits of every position


# ---------------------------------------------------------------------------- memory
def status_gb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: current RSS, VmHWM: its peak) in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def touch_weights(model) -> None:
    """Read every parameter once: from_pretrained memory-maps safetensors, so untouched weights are not in RSS."""
    with torch.inference_mode():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.sum()


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0).

    ``ru_maxrss`` itself cannot be reset: it also keeps the peak of exited threads (transformers loads
    weights in a thread pool) and, after fork + exec, the RSS of the parent at the fork.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- workers
def run_worker(args) -> dict:
    torch.set_num_threads(args.threads)
    impl, frames = args.worker, args.frames[0]
    start = time.perf_counter()
    model = load_model(impl, args)
    load_s = time.perf_counter() - start
    image_token_id = model.config.image_token_index if impl == "ours" else model.config.image_token_id
    inputs = to_device(make_inputs(impl, frames, image_token_id), args.device)
    call = vision_call(impl, model, inputs) if args.phase == "vision" else prefill_call(impl, model, inputs)
    cuda = args.device.startswith("cuda")
    if cuda:  # GPU memory: bytes allocated by PyTorch's caching allocator (weights + inputs, then the peak)
        torch.cuda.synchronize(args.device)
        peak_load = rss_loaded = torch.cuda.memory_allocated(args.device) / 2**30
        torch.cuda.reset_peak_memory_stats(args.device)
        reset = True
    else:
        touch_weights(model)
        gc.collect()
        peak_load = status_gb("VmHWM")
        rss_loaded = status_gb("VmRSS")
        reset = reset_peak_rss()
    times = []
    with torch.inference_mode():
        for i in range(1 + args.reps):
            synchronize(args.device)
            t0 = time.perf_counter()
            out = call()
            synchronize(args.device)
            times.append(time.perf_counter() - t0)
            shape = list(out.shape)
            del out
            if args.profile and i == 0:
                profile(call, args)
    if cuda:
        peak = torch.cuda.max_memory_allocated(args.device) / 2**30
    else:
        peak = status_gb("VmHWM") if reset else maxrss_gb()
    return {
        "impl": impl,
        "phase": args.phase,
        "frames": frames,
        "output_shape": shape,
        "seq_len": inputs["input_ids"].shape[1],
        "load_s": load_s,
        "warmup_s": times[0],
        "times_s": times[1:],
        "median_s": statistics.median(times[1:]),
        "peak_rss_load_gb": peak_load,
        "rss_loaded_gb": rss_loaded,
        "peak_rss_gb": peak,
        "increase_gb": peak - rss_loaded,
        "peak_reset": reset,
    }


def profile(call, args) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        call()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
    print(
        prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=15),
        file=sys.stderr,
    )


def run_ab(args) -> dict:
    """Vision encoders of both implementations in one process, called alternately (A B B A ...).

    Background load drifts over minutes on a shared machine; alternating calls in one process cancels most
    of it, so this is the fairer speed comparison of the two encoders (no memory measurement). It also
    times the attention alone on the encoder's shapes: our batched segment SDPA against native's per-frame
    loop of SDPA calls.
    """
    import torch.nn.functional as F

    from videollama3.model.vision_attention import segment_attention

    torch.set_num_threads(args.threads)
    frames = args.frames[0]
    models = {impl: load_model(impl, args) for impl in ("ours", "native")}
    calls = {}
    for impl, model in models.items():
        image_token_id = model.config.image_token_index if impl == "ours" else model.config.image_token_id
        calls[impl] = vision_call(impl, model, make_inputs(impl, frames, image_token_id))

    vision = models["ours"].config.vision_config
    heads, head_dim = vision.num_attention_heads, vision.hidden_size // vision.num_attention_heads
    length = (HEIGHT // PATCH) * (WIDTH // PATCH)
    dtype = getattr(torch, args.dtype)
    q, k, v = (torch.randn(frames * length, heads, head_dim, dtype=dtype) for _ in range(3))
    scale = head_dim**-0.5

    def per_frame_loop():  # what the native model does without flash-attn (one SDPA call per frame)
        qs, ks, vs = (x.transpose(0, 1).unsqueeze(0).split(length, dim=2) for x in (q, k, v))
        outs = [F.scaled_dot_product_attention(a, b, c, scale=scale) for a, b, c in zip(qs, ks, vs)]
        return torch.cat(outs, dim=2)[0].transpose(0, 1)

    calls["attention: ours segment SDPA"] = lambda: segment_attention(q, k, v, [length] * frames, scale, "sdpa")
    calls["attention: native per-frame loop"] = per_frame_loop
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with torch.inference_mode():
        for name in names:  # warm-up
            calls[name]()
        for rep in range(args.reps):
            for name in names if rep % 2 == 0 else reversed(names):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    return {
        "frames": frames,
        "reps": args.reps,
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "min_s": {name: min(t) for name, t in times.items()},
        "times_s": times,
        "load_avg": os.getloadavg(),
    }


def run_check(args) -> dict:
    """Logits and vision features of both models on the same video (sequentially: one model in memory)."""
    torch.set_num_threads(args.threads)
    frames = args.frames[0]
    results = {}
    for impl in ("ours", "native"):
        model = load_model(impl, args)
        image_token_id = model.config.image_token_index if impl == "ours" else model.config.image_token_id
        inputs = to_device(make_inputs(impl, frames, image_token_id), args.device)
        with torch.inference_mode():
            results[impl] = {
                "vision": vision_call(impl, model, inputs)().float().cpu(),
                "logits": prefill_call(impl, model, inputs, logits_to_keep=0)().float().cpu(),
            }
            if impl == "ours":
                results["ours_last"] = prefill_call(impl, model, inputs, logits_to_keep=1)().float().cpu()
        del model
        gc.collect()
    ours, native = results["ours"], results["native"]
    return {
        "frames": frames,
        "logits_shape": list(ours["logits"].shape),
        "logits_max_abs_diff": float((ours["logits"] - native["logits"]).abs().max()),
        "logits_max_abs": float(native["logits"].abs().max()),
        "last_logits_max_abs_diff": float((results["ours_last"][:, -1] - native["logits"][:, -1]).abs().max()),
        "vision_max_abs_diff": float((ours["vision"] - native["vision"]).abs().max()),
        "vision_max_abs": float(native["vision"].abs().max()),
        "same_argmax_fraction": float((ours["logits"].argmax(-1) == native["logits"].argmax(-1)).float().mean()),
    }


# ---------------------------------------------------------------------------- orchestration
def spawn(args, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--dtype", args.dtype,
        "--vision-layers", str(args.vision_layers),
        "--llm-layers", str(args.llm_layers),
        "--reps", str(args.reps),
        "--threads", str(args.threads),
        "--device", args.device,
        "--vision-attention", args.vision_attention,
        "--workdir", args.workdir,
        *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.worker_timeout} s", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": wall}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def machine_info(args) -> dict:
    import transformers

    model_name = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model_name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line)
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = {}
    if args.device.startswith("cuda"):
        gpu = {"gpu": torch.cuda.get_device_name(args.device), "cuda": torch.version.cuda}
    return {
        **gpu,
        "cpu": model_name,
        "cores": os.cpu_count(),
        "ram_gb": round(ram, 1),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg(),
    }


def fmt(result: dict, key: str, digits: int = 2) -> str:
    if "error" in result:
        return "failed" if "timed out" not in result["error"] else "timeout"
    return f"{result[key]:.{digits}f}"


def markdown_table(rows: list[dict], device: str = "cpu") -> str:
    memory = "peak GPU memory GB" if device.startswith("cuda") else "peak RSS GB"
    lines = [
        f"| implementation | frames | visual tokens | vision encoder s | prefill s | {memory} (vision / prefill) "
        "| increase GB (vision / prefill) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        v, p = row["vision"], row["prefill"]
        lines.append(
            f"| {row['impl']} | {row['frames']} | {row['tokens']} | {fmt(v, 'median_s')} | {fmt(p, 'median_s')} "
            f"| {fmt(v, 'peak_rss_gb')} / {fmt(p, 'peak_rss_gb')} "
            f"| {fmt(v, 'increase_gb')} / {fmt(p, 'increase_gb')} |"
        )
    return "\n".join(lines)


def orchestrate(args) -> None:
    started = time.perf_counter()
    info = machine_info(args)
    print(json.dumps(info), flush=True)
    ours_dir, hf_dir, setup_s = prepare_checkpoints(args)
    print(f"checkpoints: {ours_dir}, {hf_dir} (built in {setup_s:.1f} s)", flush=True)
    check = spawn(args, ["--check", "--frames", str(min(args.frames))])
    print("check:", json.dumps(check), flush=True)
    native_frames = args.frames if args.native_frames is None else args.native_frames
    # Interleaved (ours then native for each length) so that background load drifts hit both alike.
    plan = [
        (impl, f)
        for f in sorted(set(args.frames) | set(() if args.skip_native else native_frames))
        for impl, frames in (("ours", args.frames), ("native", () if args.skip_native else native_frames))
        if f in frames
    ]
    rows = []
    for impl, frames in plan:
        row = {
            "impl": impl,
            "frames": frames,
            "tokens": frames * (HEIGHT // PATCH // MERGE) * (WIDTH // PATCH // MERGE),
        }
        for phase in ("vision", "prefill"):
            row[phase] = spawn(args, ["--worker", impl, "--phase", phase, "--frames", str(frames)])
            print(f"{impl} {frames} frames {phase}:", json.dumps(row[phase]), flush=True)
        rows.append(row)
    table = markdown_table(rows, args.device)
    print()
    print(table)
    ours = {r["frames"]: r for r in rows if r["impl"] == "ours" and "error" not in r["prefill"]}
    if len(ours) >= 2:
        lo, hi = min(ours), max(ours)
        for phase in ("vision", "prefill"):
            a, b = ours[lo][phase].get("increase_gb"), ours[hi][phase].get("increase_gb")
            if a is not None and b is not None:
                print(
                    f"ours {phase} increase {lo} -> {hi} frames: {a:.2f} -> {b:.2f} GB (x{b / a:.2f}, frames x{hi / lo:.2f})"
                )
    total = time.perf_counter() - started
    print(f"\ntotal wall time {total:.0f} s; load average {os.getloadavg()}")
    out = Path(args.workdir) / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "machine": info,
                "check": check,
                "rows": rows,
                "total_s": total,
                "load_avg_end": os.getloadavg(),
            },
            indent=2,
        )  # fmt: skip
    )
    print(f"results: {out}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 60], help="video lengths (ours)")
    parser.add_argument("--native-frames", type=int, nargs="+", default=None, help="video lengths for native")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--vision-layers", type=int, default=27)
    parser.add_argument("--llm-layers", type=int, default=28)
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda[:i]; on CUDA memory is PyTorch's allocated GPU memory, not RSS"
    )
    parser.add_argument("--workdir", default="/tmp/videollama3_bench")
    parser.add_argument(
        "--vision-attention", default="auto", help="ours: vision attention backend (auto, sdpa, flash, flex)"
    )
    parser.add_argument("--worker-timeout", type=int, default=600, help="seconds per measurement process")
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--worker", choices=["ours", "native"], help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["vision", "prefill"], default="vision", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--ab", action="store_true", help="only: both vision encoders in one process, alternating (--frames[0])"
    )
    parser.add_argument("--profile", action="store_true", help="with --worker: print a torch.profiler table")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.ab:
        prepare_checkpoints(args)
        print(json.dumps(run_ab(args), indent=1), flush=True)
    elif args.worker or args.check:
        print(json.dumps(run_check(args) if args.check else run_worker(args)), flush=True)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
