"""Training throughput and padding waste, with and without packing (CPU or GPU).

Builds a small random VideoLLaMA3 (Qwen2 LLM: hidden 384, 4 layers by default; SigLIP-style encoder: hidden
128, 2 layers) and a mixed dataset (images, multi-image, videos, text-only samples of 20-250 tokens), processes
the samples once, then times optimizer steps of the same global batches in two modes:

- ``packed``: first-fit-decreasing packing into micro-batches of ``--budget`` tokens (no padding);
- ``padded``: samples sorted longest first, at most ``--micro-batch-size`` per micro-batch and ``--budget``
  padded positions (samples x longest), right-padded to the longest.

Data loading is excluded (samples are processed beforehand): the numbers are the model step alone. The
two modes run the same global batches, interleaved step by step, and each step is timed as the best of
``--repeats`` runs, so that load from other jobs on a shared machine hits both modes alike. Token
counts are real tokens (padding excluded); padding waste = padded positions / positions computed.

    python benchmarks/bench_training.py --steps 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch


def build_small_world(folder: Path, samples: int, seed: int, hidden: int, layers: int) -> tuple[Path, list[Path]]:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from videollama3.synthetic.tiny import build_tiny_tokenizer, write_tiny_data
    from videollama3.training.initialize import build_initial_checkpoint

    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    llm = folder / "llm"
    config = Qwen2Config(
        vocab_size=512, hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(llm)
    tokenizer.save_pretrained(llm)
    vision = folder / "siglip"
    SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, patch_size=14
        )
    ).save_pretrained(vision)
    init = build_initial_checkpoint(llm, vision, folder / "init", dtype=torch.float32)
    files = write_tiny_data(folder / "data", num_samples=samples, seed=seed)
    # Text-only samples of very different lengths: what makes padding expensive.
    rng = random.Random(seed)
    words = AutoTokenizer.from_pretrained(llm).convert_ids_to_tokens(range(40, 300))
    lines = []
    for _ in range(samples):
        question = " ".join(rng.choice(words).lstrip("Ġ") for _ in range(rng.randint(5, 100)))
        answer = " ".join(rng.choice(words).lstrip("Ġ") for _ in range(rng.randint(5, 100)))
        lines.append(
            json.dumps({"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]})
        )
    long_text = folder / "data" / "long_text.jsonl"
    long_text.write_text("\n".join(lines) + "\n")
    return init, [files["captions"], files["vqa"], files["video"], long_text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32, help="samples per annotation file (4 files)")
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each step; the fastest counts")
    parser.add_argument("--budget", type=int, default=512, help="tokens per micro-batch: packed, or padded positions")
    parser.add_argument("--hidden", type=int, default=384, help="LLM width")
    parser.add_argument("--layers", type=int, default=4, help="LLM layers")
    parser.add_argument("--micro-batch-size", type=int, default=4, help="samples per padded micro-batch")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = ("packed", "padded")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        init, files = build_small_world(tmp, args.samples, args.seed, args.hidden, args.layers)
        trainers = {mode: make_trainer(mode, tmp, init, files, args, device) for mode in modes}
        order = trainers["packed"].order
        dataset = trainers["packed"].dataset
        batches = [
            [dataset[order[p]] for p in order.step_positions(s, args.global_batch)] for s in range(args.steps + 1)
        ]
        totals = {mode: dict.fromkeys(("tokens", "slots", "micro", "wall", "cpu"), 0.0) for mode in modes}
        for step, items in enumerate(batches):
            for mode in modes:
                trainer = trainers[mode]
                # Best of --repeats runs of the step (same work each time): robust to other jobs' load.
                walls, cpus = [], []
                for _ in range(args.repeats if step else 1):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    wall, cpu = time.perf_counter(), time.process_time()
                    stats = trainer.train_step(items)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                if step == 0:  # warm-up
                    continue
                t = totals[mode]
                t["wall"] += min(walls)
                t["cpu"] += min(cpus)
                t["tokens"] += stats["tokens"]
                t["slots"] += stats["tokens"] / (1 - stats["padding_waste"])
                t["micro"] += stats["micro_batches"]

    print(f"device: {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, precision {args.precision}")  # fmt: skip
    print(f"LLM hidden {args.hidden} x {args.layers} layers; global batch {args.global_batch} samples, "
          f"packing budget {args.budget} tokens, padded micro-batch {args.micro_batch_size} samples, "
          f"{args.steps} steps per mode, best of {args.repeats} runs each\n")  # fmt: skip
    print("| mode | micro-batches / step | padding waste | tokens / s (wall) | tokens / CPU-s | s / step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode, t in totals.items():
        print(
            f"| {mode} | {t['micro'] / args.steps:.1f} | {100 * (1 - t['tokens'] / t['slots']):.1f}% "
            f"| {t['tokens'] / t['wall']:,.0f} | {t['tokens'] / t['cpu']:,.0f} | {t['wall'] / args.steps:.2f} |"
        )


def make_trainer(mode: str, tmp: Path, init: Path, files: list[Path], args, device: torch.device):
    """A set-up :class:`StageTrainer` on the benchmark data, packing or padding."""
    from videollama3.distributed import DistEnv
    from videollama3.training.recipe import recipe_from_dict
    from videollama3.training.trainer import StageTrainer

    data = {
        "sources": [{"path": str(f)} for f in files],
        "data_folder": str(tmp / "data"),
        "model_max_length": args.budget,
        "mm_max_length": 256,
        "use_token_compression": True,
        "num_workers": 0,
    }
    train = {
        "global_batch_size": args.global_batch,
        "packing": mode == "packed",
        "micro_batch_tokens": args.budget,
        "micro_batch_size": args.micro_batch_size,
        "precision": args.precision,
        "gradient_checkpointing": False,
        "report_to": [],
        "resume": None,
    }
    recipe = recipe_from_dict(
        {
            "name": "bench",
            "output_dir": str(tmp / mode),
            "init": {"checkpoint": str(init)},
            "stages": [{"name": "bench", "data": data, "train": train}],
        }
    )
    stage = recipe.stages[0]
    trainer = StageTrainer(stage, init, recipe.stage_dir(stage), args.seed, DistEnv(device=device))
    trainer.setup()
    trainer.objective.train()
    return trainer


if __name__ == "__main__":
    main()
