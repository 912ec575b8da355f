"""Benchmark: conversation -> model-ready tensors for long videos (wall time and peak memory).

Generates 1280x720 30 fps H.264 videos (libx264, x264's default preset ``medium`` unless ``--preset`` says
otherwise, default GOP of 250 frames; cached), then times each pipeline in a fresh subprocess (so that peak
RSS, ``ru_maxrss``, is its own) at fps 1 / max 180 frames with the default budget of 16384 visual tokens:

- ``ours``: ``VideoLLaMA3Processor`` (plans frames from packet timestamps, decodes only the packets the
  kept frames need, seeking between far-apart frames and leaving out unwanted non-reference pictures, one
  decoder per core over separate GOPs, resizes every kept frame right after decoding, writes it straight
  into ``pixel_values``).
- ``official``: the official processor's approach, reproduced without the ffmpeg binary: decode every frame
  (PyAV, default threading), pick frames as ``fps=1:round=down`` does, keep every picked frame as full-size
  RGB (the ffmpeg pipe's output), subsample to ``max_frames``, copy them into the conversation, then the
  official image processor's per-frame transformers ``resize`` / ``rescale`` / ``normalize`` and patch
  reshape, and the prompt expansion + tokenization of ``process_text``.
- ``official-ffmpeg``: the same with the ffmpeg binary doing the decoding, as the official code runs it
  (``ffprobe``, then the ``fps`` filter piping rgb24 frames; needs ``ffmpeg`` on the PATH).
- ``native``: transformers' own ``VideoLlama3`` video processor, when its dependencies (torchvision) exist.

Usage::

    python benchmarks/bench_preprocessing.py                  # 60 s and 10 min videos
    python benchmarks/bench_preprocessing.py --durations 60 --repeats 3 --preset ultrafast
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "tests" / "fixtures" / "parity" / "model"  # any VideoLLaMA3 processor folder
FPS, MAX_FRAMES = 1, 180
METHODS = ("ours", "official", "official-ffmpeg", "native")


# --------------------------------------------------------------------------------------------------
# Test videos
# --------------------------------------------------------------------------------------------------


def make_video(
    path: Path, seconds: int, width: int = 1280, height: int = 720, fps: int = 30, preset: str = "medium"
) -> Path:
    """A textured scene panning sideways with a moving object: every frame differs, as in real footage.

    Videos longer than a minute repeat the 1-minute video (packets copied with shifted timestamps): the
    same decoding work as fresh footage, ten times faster to make.
    """
    import av
    import numpy as np

    if path.exists():
        return path
    if seconds > 60 and seconds % 60 == 0:
        base = make_video(path.with_name(path.name.replace(f"_{seconds}s_", "_60s_")), 60, width, height, fps, preset)
        partial = path.with_suffix(".partial.mp4")
        with av.open(str(base)) as source, av.open(str(partial), "w") as target:
            stream_in = source.streams.video[0]
            stream_out = target.add_stream_from_template(stream_in)
            span = 60 * fps * round(1 / (fps * stream_in.time_base))  # one minute in the stream's time base
            for repeat in range(seconds // 60):
                source.seek(0, stream=stream_in)
                for packet in source.demux(stream_in):
                    if packet.dts is None:
                        continue
                    packet.pts += repeat * span
                    packet.dts += repeat * span
                    packet.stream = stream_out
                    target.mux(packet)
        partial.rename(path)
        return path
    from PIL import Image

    # Background twice the frame width (the camera pans across it): smooth shapes plus fine grain, so that
    # every frame differs and the picture is neither noise nor flat (2.2 Mbit/s with x264 ultrafast, 0.6 Mbit/s
    # with medium, whose motion search finds the pan).
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (height // 40, width // 20, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width * 2, height), Image.Resampling.BICUBIC), np.int16)
    grain = rng.integers(-6, 7, (height, width * 2, 1), dtype=np.int16)
    background = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset}
        for i in range(seconds * fps):
            x = (i * 3) % width
            image = background[:, x : x + width].copy()
            cx = int((0.5 + 0.4 * math.sin(i / 45)) * (width - 160))
            cy = int((0.5 + 0.4 * math.cos(i / 70)) * (height - 160))
            image[cy : cy + 160, cx : cx + 160] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


# --------------------------------------------------------------------------------------------------
# Pipelines (run in a worker subprocess)
# --------------------------------------------------------------------------------------------------


def conversation(video: Path) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": {"video_path": str(video), "fps": FPS, "max_frames": MAX_FRAMES}},
                {"type": "text", "text": "What happens in this video?"},
            ],
        }
    ]


def run_ours(model: Path, video: Path):
    from videollama3.processing import VideoLLaMA3Processor

    processor = VideoLLaMA3Processor.from_pretrained(model)
    start_rss, start_cpu = _rss_mb(), _cpu_seconds()
    start = time.perf_counter()
    out = processor(conversation(video), add_system_prompt=True, add_generation_prompt=True)
    return time.perf_counter() - start, _cpu_seconds() - start_cpu, start_rss, out


def official_frames_pyav(video: Path):
    """``ffmpeg -vf fps=1:round=down -pix_fmt rgb24 pipe:`` reproduced with PyAV: (t, 3, h, w), start, duration."""
    import av
    import numpy as np

    container = av.open(str(video))
    stream = container.streams.video[0]
    duration = container.duration / 1e6
    start_time = float(stream.start_time * stream.time_base)
    time_base, rate = Fraction(stream.time_base), Fraction(FPS)
    picked, pending, next_slot, last_pts = [], None, None, 0
    for frame in container.decode(stream):  # the fps filter, streaming: keep the last frame of each slot
        slot = math.floor(frame.pts * time_base * rate)
        if pending is not None:
            while next_slot < slot:
                picked.append(pending.to_ndarray(format="rgb24"))  # full-size rgb24, as piped out
                next_slot += 1
        else:
            next_slot = slot
        pending, last_pts = frame, frame.pts + (frame.duration or 0)
    end_slot = math.floor(last_pts * time_base * rate)
    while next_slot < end_slot:
        picked.append(pending.to_ndarray(format="rgb24"))
        next_slot += 1
    container.close()
    return np.stack(picked).transpose(0, 3, 1, 2), start_time, duration  # np.frombuffer(out).reshape(...)


def official_frames_ffmpeg(video: Path):
    """The official ``load_video`` with the ffmpeg binary, as ffmpeg-python runs it: ``ffprobe`` for the
    stream, then ``ffmpeg -i video -vf fps=1:round=down -f rawvideo -pix_fmt rgb24 pipe:`` read whole."""
    import numpy as np

    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-show_format", "-show_streams", "-of", "json", str(video)],
            capture_output=True,
            check=True,
        ).stdout
    )
    stream = next(s for s in probe["streams"] if s["codec_type"] == "video")
    width, height = int(stream["width"]), int(stream["height"])
    duration = float(probe["format"]["duration"])
    start_time = float(stream.get("start_time", 0.0))
    out = subprocess.run(
        ["ffmpeg", "-i", str(video), "-filter_complex", f"[0]fps=fps={FPS}:round=down[s0]", "-map", "[s0]",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    frames = np.frombuffer(out, np.uint8).reshape([-1, height, width, 3]).transpose([0, 3, 1, 2])
    return frames, start_time, duration


def run_official(model: Path, video: Path, decoder: str = "pyav"):
    """The official VideoLLaMA3 processor's steps; ``decoder`` "ffmpeg" runs the ffmpeg binary as the
    official code does, "pyav" stands in for it with PyAV (same frames) where there is no binary."""
    import numpy as np
    import torch
    from transformers import Qwen2Tokenizer
    from transformers.feature_extraction_utils import BatchFeature
    from transformers.image_transforms import normalize, rescale, resize, to_channel_dimension_format
    from transformers.image_utils import ChannelDimension, PILImageResampling, infer_channel_dimension_format

    tokenizer = Qwen2Tokenizer.from_pretrained(model)
    config = json.loads((model / "preprocessor_config.json").read_text())
    start_rss, start_cpu = _rss_mb(), _cpu_seconds()
    start = time.perf_counter()

    # load_video: probe, then "ffmpeg -i video -vf fps=1:round=down -pix_fmt rgb24 pipe:".
    frames, start_time, duration = (official_frames_ffmpeg if decoder == "ffmpeg" else official_frames_pyav)(video)
    timestamps = np.arange(start_time, start_time + duration + 1 / FPS, 1 / FPS)[: len(frames)]
    if len(frames) > MAX_FRAMES:
        indices = np.linspace(0, len(frames) - 1, MAX_FRAMES, dtype=int)
        frames, timestamps = frames[indices], timestamps[indices]
    frames = [frame for frame in frames]
    # _load_multimodal_data: every frame is copied into the conversation.
    images = [image.copy() for image in frames]
    del frames

    # Videollama3ImageProcessor.preprocess: simple_batched_resize, then per frame resize/rescale/normalize.
    factor = config["patch_size"] * 2
    max_pixels, min_pixels = config["max_tokens"] * factor * factor, config["min_tokens"] * factor * factor
    height, width = images[0].shape[1:]
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels // len(images):
        beta = math.sqrt((height * width) / (max_pixels // len(images)))
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    processed = []
    for image in images:
        # (convert_to_rgb, a no-op for arrays in the transformers the reference pins, is skipped: transformers 5's
        # version would turn the array into a PIL image.)
        data_format = infer_channel_dimension_format(image)
        image = resize(image, size=(h_bar, w_bar), resample=PILImageResampling.BICUBIC, input_data_format=data_format)
        image = rescale(image, scale=config["rescale_factor"], input_data_format=data_format)
        image = normalize(image, mean=config["image_mean"], std=config["image_std"], input_data_format=data_format)
        processed.append(to_channel_dimension_format(image, ChannelDimension.FIRST, input_channel_dim=data_format))
    patches = np.array(processed)
    t, channel, p, m = patches.shape[0], patches.shape[1], config["patch_size"], 2
    grid_h, grid_w = h_bar // p, w_bar // p
    patches = patches.reshape(t, channel, grid_h // m, m, p, grid_w // m, m, p).transpose(0, 2, 5, 3, 6, 1, 4, 7)
    pixel_values = patches.reshape(t * grid_h * grid_w, channel * p * p)

    # process_text: the chat template, then every <image> replaced by its tokens, then the tokenizer.
    conv = conversation(video)
    conv[0]["content"][0] = {"type": "video", "num_frames": t, "timestamps": list(timestamps)}
    text = tokenizer.apply_chat_template(
        conv, tokenize=False, add_system_prompt=True, add_generation_prompt=True, image_token="<image>"
    )
    tokens_per_frame = (grid_h // m) * (grid_w // m)
    while "<image>" in text:
        text = text.replace("<image>", "<placeholder>" * tokens_per_frame, 1)
    text = text.replace("<placeholder>", "<image>")
    text_inputs = tokenizer(text)
    out = BatchFeature(
        data={
            **text_inputs,
            "pixel_values": pixel_values,
            "grid_sizes": np.array([[t, grid_h, grid_w]]),
            "merge_sizes": np.array([m]),
        },
        tensor_type="pt",
    )
    out["modals"] = ["video"]
    assert isinstance(out["pixel_values"], torch.Tensor)
    return time.perf_counter() - start, _cpu_seconds() - start_cpu, start_rss, out


def _import_torchvision() -> None:
    """Import torchvision for the native video processor, which uses only its pure-PyTorch transforms.

    PyPI's torchvision for torch 2.13 is a CUDA build: on a CPU-only torch its compiled ops (nms, ...) do
    not load, and registering their fake kernels fails at import. Those registrations are skipped here.
    """
    import torch.library

    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError:
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    register_fake = torch.library.register_fake

    def tolerant(op, *args, **kwargs):
        decorate = register_fake(op, *args, **kwargs)

        def apply(function):
            try:
                return decorate(function)
            except RuntimeError:  # the compiled operator does not exist in this torch build
                return function

        return apply

    torch.library.register_fake = tolerant
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake = register_fake


def run_native(model: Path, video: Path):
    _import_torchvision()
    from transformers import VideoLlama3VideoProcessor
    from transformers.video_utils import load_video

    # The reference budget: 16384 visual tokens (28 x 28 pixels each after the 2 x 2 merge) for the video.
    processor = VideoLlama3VideoProcessor(max_pixels=16384 * 28 * 28)

    def fetch_videos(videos, sample_indices_fn=None):
        # transformers decodes with torchcodec only (no wheel for this torch build); its own PyAV reader is
        # the same function with backend="pyav".
        if isinstance(videos, list):
            return list(zip(*[fetch_videos(v, sample_indices_fn) for v in videos]))
        return load_video(videos, backend="pyav", sample_indices_fn=sample_indices_fn)

    processor.fetch_videos = fetch_videos
    start_rss, start_cpu = _rss_mb(), _cpu_seconds()
    start = time.perf_counter()
    out = processor(videos=[str(video)], do_sample_frames=True, fps=FPS, max_frames=MAX_FRAMES, return_tensors="pt")
    return time.perf_counter() - start, _cpu_seconds() - start_cpu, start_rss, out


def _cpu_seconds() -> float:
    # All threads of the process, plus finished child processes (the ffmpeg / ffprobe binaries).
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(method: str, model: Path, video: Path) -> None:
    runner = {
        "ours": run_ours,
        "official": run_official,
        "official-ffmpeg": lambda m, v: run_official(m, v, decoder="ffmpeg"),
        "native": run_native,
    }[method]
    seconds, cpu_seconds, start_rss, out = runner(model, video)
    peak_rss = _rss_mb()  # before hashing, which copies pixel_values
    pixel_values = out.get("pixel_values", out.get("pixel_values_videos"))
    digest = hashlib.sha256(pixel_values.float().contiguous().numpy().tobytes()).hexdigest()[:12]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_rss_mb": peak_rss,
                "rss_before_mb": start_rss,
                "pixel_values": list(pixel_values.shape),
                "pixel_values_sha256": digest,
                "input_ids": list(out["input_ids"].shape) if "input_ids" in out else None,
            }
        )
    )


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def measure(method: str, model: Path, video: Path) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--model", str(model), str(video)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": reason}
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    import av
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {cores} cores, {memory:.0f} GiB RAM; Python {platform.python_version()}, torch {torch.__version__}, "
        f"PyAV {av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 600], help="video lengths in seconds")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=2, help="runs per method and video (the fastest is kept)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a VideoLLaMA3 checkpoint / processor folder")
    parser.add_argument(
        "--preset",
        default="medium",
        help="libx264 preset of the generated videos: medium (x264's default: B-frames, CABAC, deblocking) or "
        "e.g. ultrafast (none of these: cheaper to decode, no B-frames to skip)",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "videollama3-bench")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("video", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.video)
        return

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    rows = []
    for seconds in args.durations:
        started = time.perf_counter()
        name = f"bench_{seconds}s_720p30_{args.preset}.mp4"
        video = make_video(args.cache_dir / name, seconds, preset=args.preset)
        print(
            f"video: {video} ({video.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - started:.0f} s)"
        )
        # Repeats are interleaved (A B A B ...) so that a busy machine slows every pipeline alike.
        runs: dict[str, list[dict]] = {method: [] for method in args.methods}
        for repeat in range(max(1, args.repeats)):
            for method in args.methods:
                if repeat > 0 and all("error" in r for r in runs[method]):
                    continue  # not runnable here: no need to fail again
                runs[method].append(measure(method, args.model, video))
        for method in args.methods:
            ok = [r for r in runs[method] if "error" not in r]
            if not ok:
                print(f"  {seconds:>4} s  {method:<9} not run: {runs[method][0]['error']}")
                rows.append((seconds, method, None))
                continue
            best = min(ok, key=lambda r: r["seconds"])
            times = ", ".join(f"{r['seconds']:.2f}" for r in ok)
            best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
            rows.append((seconds, method, best))
            print(
                f"  {seconds:>4} s  {method:<9} {best['seconds']:7.2f} s (CPU {best['cpu_seconds']:.2f} s)  "
                f"peak RSS {best['peak_rss_mb']:7.0f} MB "
                f"(+{best['peak_rss_mb'] - best['rss_before_mb']:.0f} MB over the loaded process)  "
                f"pixel_values {best['pixel_values']} sha256 {best['pixel_values_sha256']}  (runs: {times})"
            )
    print("\n| video | pipeline | wall time | CPU time | peak RSS | RSS added by the call | pixel_values (sha256) |")
    print("|---|---|---|---|---|---|---|")
    for seconds, method, best in rows:
        label = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
        if best is None:
            print(f"| {label} | {method} | not run | | | | |")
        else:
            print(
                f"| {label} | {method} | {best['seconds']:.2f} s | {best['cpu_seconds']:.2f} s | {best['peak_rss_mb']:.0f} MB | "
                f"{best['peak_rss_mb'] - best['rss_before_mb']:.0f} MB | "
                f"{tuple(best['pixel_values'])} ({best['pixel_values_sha256']}) |"
            )


if __name__ == "__main__":
    main()
