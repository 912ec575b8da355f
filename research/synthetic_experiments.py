"""The paper's claim in miniature, on the synthetic world (research/experiments.md).

1. Four-stage vision-centric recipe (``videollama3 train synthetic``) vs video-only training from the same
   initialisation with the same compute (``videollama3 train synthetic-video-only``): accuracy per task on
   the held-out benchmark, and the training tokens each run consumed (from the stages' metrics.jsonl).
2. Differential Frame Pruner on vs off for a model: accuracy, visual tokens per video, prefill time.

    python research/synthetic_experiments.py \\
        --model four-stage=runs/synthetic/stage4/final --model video-only=runs/synthetic-video-only/video/final \\
        --runs four-stage=runs/synthetic --runs video-only=runs/synthetic-video-only --n 400 --json out.json

Prefill time: one forward pass over the whole prompt (batch 1, fp32, this process's torch threads),
median over ``--prefill-videos`` benchmark videos, after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def training_tokens(run_dir: Path) -> dict[str, dict[str, float]]:
    """Steps, non-padding tokens and seconds each stage of a run trained for, from its metrics.jsonl."""
    out: dict[str, dict[str, float]] = {}
    for log in sorted(run_dir.glob("*/logs/metrics.jsonl")):
        steps, tokens, seconds = 0, 0.0, 0.0
        for line in log.read_text().splitlines():
            row = json.loads(line)
            steps += 1
            if "tokens" in row:
                tokens += row["tokens"]
                seconds += row.get("step_s", 0.0)
            elif "pack_fill" in row:  # logs written before "tokens" was recorded (packed batches)
                tokens += row["pack_fill"] * row.get("micro_batches", 1) * row.get("micro_batch_tokens", 2048)
        out[log.parent.parent.name] = {"steps": steps, "tokens": int(tokens), "seconds": round(seconds, 1)}
    return out


def blind_baseline(data_dir: Path, bench_dir: Path) -> dict[str, float]:
    """Accuracy of answering without looking: the most frequent training answer to the same question text.

    What a model that learned the answer priors but not to see scores; the floor trained models must beat."""
    from collections import Counter, defaultdict

    from videollama3.synthetic import tasks
    from videollama3.synthetic.benchmark import TEMPORAL_TASKS
    from videollama3.synthetic.writer import read_benchmark

    answers: dict[str, Counter] = defaultdict(Counter)
    for name in ("image_qa", "video_qa"):
        for line in (data_dir / f"{name}.jsonl").read_text().splitlines():
            turns = [t for t in json.loads(line)["conversations"] if t["from"] != "system"]
            for question, answer in zip(turns[0::2], turns[1::2]):
                text = question["value"].replace("<image>\n", "").replace("<video>\n", "")
                answers[text.split("\n")[0] + ("|mc" if "(A)" in text else "")][answer["value"]] += 1
    right: dict[str, list[bool]] = defaultdict(list)
    for item in read_benchmark(bench_dir):
        qa = item.qa
        seen = answers.get(qa.question + ("|mc" if qa.options else ""))
        guess = seen.most_common(1)[0][0] if seen else "A"
        correct = tasks.score(qa, guess)
        right[item.modality].append(correct)
        if item.modality == "video" and qa.task in TEMPORAL_TASKS:
            right["video_temporal"].append(correct)
    return {k: 100.0 * sum(v) / len(v) for k, v in right.items()}


def prefill_stats(model_dir: str, bench_dir: Path, videos: int, prune: bool) -> dict[str, float]:
    import torch

    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.processing import VideoLLaMA3Processor

    processor = VideoLLaMA3Processor.from_pretrained(model_dir)
    model = VideoLLaMA3ForCausalLM.from_pretrained(model_dir).eval()
    paths = sorted((bench_dir / "videos").glob("*.mp4"))[: videos + 1]
    tokens, times = [], []
    for k, path in enumerate(paths):
        conversation = [
            {
                "role": "user",
                "content": [
                    {"type": "video", "video": {"video_path": str(path), "fps": 1, "max_frames": 180}},
                    {"type": "text", "text": "What happens in the video?"},
                ],
            }
        ]
        inputs = processor(conversation=conversation, add_generation_prompt=True, prune=prune, return_tensors="pt")
        with torch.inference_mode():
            start = time.perf_counter()
            model(**inputs)
            elapsed = time.perf_counter() - start
        if k == 0:
            continue  # warm-up
        times.append(elapsed)
        tokens.append(int((inputs["input_ids"] == model.config.image_token_index).sum()))
    return {
        "visual_tokens_per_video": statistics.mean(tokens),
        "prefill_ms_median": 1000 * statistics.median(times),
        "videos": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    from videollama3.synthetic.benchmark import ensure_benchmark, evaluate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="a model to evaluate")
    parser.add_argument("--runs", action="append", default=[], metavar="NAME=DIR", help="a run's output_dir")
    parser.add_argument("--n", type=int, default=400, help="held-out questions (half image, half video)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument("--prefill-videos", type=int, default=40)
    parser.add_argument("--data", type=Path, default=Path("runs/synthetic/data"), help="training data (baseline)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    models = dict(spec.split("=", 1) for spec in args.model)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"}
    results["training"] = {name: training_tokens(Path(d)) for name, d in (s.split("=", 1) for s in args.runs)}
    bench = ensure_benchmark(args.seed, args.n // 2, args.n - args.n // 2, 0)
    if (args.data / "image_qa.jsonl").is_file():
        results["blind_baseline"] = blind_baseline(args.data, bench)
        print("blind baseline", json.dumps(results["blind_baseline"]), flush=True)
    for name, model_dir in models.items():
        entry = results.setdefault(name, {})
        for prune in (True, False):
            # The pruner only touches video frames: with it off, only the video questions are asked again.
            images, videos = (None, None) if prune else (0, args.n - args.n // 2)
            metrics = evaluate(
                model_dir, n=args.n, seed=args.seed, images=images, videos=videos, use_token_compression=prune
            )
            key = "pruning_on" if prune else "pruning_off"
            keys = (
                ("accuracy", "image", "video", "video_temporal", "per_task") if prune else ("video", "video_temporal")
            )
            entry[key] = {k: metrics[k] for k in keys}
            entry[key].update(prefill_stats(model_dir, bench, args.prefill_videos, prune))
            print(name, key, json.dumps({k: v for k, v in entry[key].items() if k != "per_task"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
