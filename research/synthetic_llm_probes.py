"""Language-side probes: can the small model's LLM, trained from scratch, learn in-context retrieval in budget?

The bundled model answers multiple-choice questions at chance (research/experiments.md). These probes take the
vision out: the same LLM (the ``synthetic`` recipe's Qwen2 widths and tokenizer, random initialisation,
AdamW at the recipe's rate, bf16 autocast, batches of 16 unless ``--batch``) is trained on text alone,
where every answer is written in the context, and its held-out accuracy is measured as training goes on:

``reading``
    Scene captions followed by the world's questions about them (``There is a large red circle at the
    top left.`` then ``What shape is the object?`` / multiple choice). The answer is in the text; the
    model only has to find it (and, for multiple choice, find the option that says it).
``options``
    The matching step alone: ``Which option says green?`` with four options, eight per sequence.
``option``
    The same, one question per (short) sequence.
``induction-content``
    Random tokens in which one segment of random length repeats at a random place: predicting the
    repeat needs content-based lookup (an induction head: find the earlier occurrence of the current
    token, copy what followed it), the circuit that in-context retrieval is built from.
``induction-position``
    The same with the whole sequence repeated at a fixed period: a fixed-offset attention head suffices.

An answer counts as right when all its tokens are the argmax under teacher forcing.

    python research/synthetic_llm_probes.py --init runs/synthetic/init --json runs/llm_probes.json
    python research/synthetic_llm_probes.py --init runs/synthetic/init --probes option --init-range 0.02

``--init-range`` draws the random weights with another standard deviation than the init folder's;
``--optimizer muon`` trains the blocks' matrices with Muon (as the recipe's ``optim.optimizer: muon``).

``--init`` supplies the tokenizer and the LLM's config (a folder written by ``videollama3 train synthetic``'s ``world`` step).
Results and their reading are in research/experiments.md ("Why multiple choice fails: the LLM").
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

BATCH = 16
DEFAULT_STEPS = {
    "reading": 600,
    "options": 400,
    "option": 600,
    "induction-content": 1500,
    "induction-position": 300,
}


def build_llm(init_dir: str, seed: int, init_range: float | None = None):
    """A random Qwen2 LLM with the LLM half of the small model's config in ``init_dir`` (same widths,
    vocabulary and initialisation range as the recipe's, unless ``init_range`` is given)."""
    from transformers import Qwen2ForCausalLM

    from videollama3 import VideoLLaMA3Config

    config = VideoLLaMA3Config.from_pretrained(init_dir)
    if init_range is not None:
        config.initializer_range = init_range
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


# ---------------------------------------------------------------------------------------------- samples
class ChatText:
    """Token ids of user/assistant turns in the chat template's layout, answer tokens labelled."""

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def encode(self, context: str, qas: list[tuple[str, str, str]]):
        """``qas``: (prompt, answer, key). Returns ids, labels and (answer start, answer length, key)."""
        ids = self.tok("<|im_start|>user\n" + context)["input_ids"] if context else []
        labels, marks = [-100] * len(ids), []
        for prompt, answer, key in qas:
            opening = "\n<|im_start|>user\n" if marks else ("\n" if context else "<|im_start|>user\n")
            p = self.tok(opening + prompt + "<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
            a = self.tok(answer + "<|im_end|>")["input_ids"]
            ids += p
            labels += [-100] * len(p)
            marks.append((len(ids), len(a) - 1, key))  # the answer without its <|im_end|>
            ids += a
            labels += a
        return ids, labels, marks


def scene_in_words(seed: int, image: bool, index: int, rng: np.random.Generator):
    """(modality, caption, questions) of image or video scene ``index``: the scene told in words, with
    every question it supports (drawn with ``rng``). Also used by synthetic_text_scenes.py."""
    from videollama3.synthetic import tasks, world

    if image:
        scene = world.sample_image_scene(seed, index)
        return "image", tasks.image_caption(scene), tasks.image_questions(scene, rng)
    scene = world.sample_video_scene(seed, index)
    return "video", tasks.video_caption(scene), tasks.video_questions(scene, rng)


def reading_sample(chat: ChatText, seed: int, index: int):
    from videollama3.synthetic import tasks

    image = index % 2 == 0
    rng = tasks.qa_rng(seed, index // 2, 0 if image else 1)
    modality, caption, questions = scene_in_words(seed, image, index // 2, rng)
    chosen = tasks.select_questions(questions, np.random.default_rng([seed, index]), 8)
    return chat.encode(caption, [(q.prompt, q.answer, f"{modality}/{q.kind}") for q in chosen])


def options_sample(chat: ChatText, seed: int, index: int, questions: int = 8):
    from videollama3.synthetic import tasks, world

    rng = np.random.default_rng([seed, index])
    pools = [list(world.COLOURS), list(world.SHAPES), list(world.POSITIONS.values()), list(world.WORDS)]
    qas = []
    for _ in range(questions):
        pool = pools[int(rng.integers(len(pools)))]
        options = [str(o) for o in rng.choice(pool, 4, replace=False)]
        answer = int(rng.integers(4))
        qa = tasks.QA(f"Which option says {options[answer]}?", tasks.LETTERS[answer], "options", options)
        qas.append((qa.prompt, qa.answer, "mc"))
    return chat.encode("", qas)


def induction_sample(rng: np.random.Generator, vocab: int, fixed_period: bool, length: int = 96):
    """Random tokens with a repeated segment; labels on the repeat (after its first token)."""
    ids = rng.integers(10, vocab, size=length)
    labels = np.full(length, -100)
    if fixed_period:
        half = length // 2
        ids[half:] = ids[:half]
        labels[half + 1 :] = ids[half + 1 :]
    else:
        n = int(rng.integers(8, length // 2))
        start = int(rng.integers(0, length - 2 * n + 1))
        ids[start + n : start + 2 * n] = ids[start : start + n]
        labels[start + n + 1 : start + 2 * n] = ids[start + n + 1 : start + 2 * n]
    return ids.tolist(), labels.tolist(), [(i, 1, "copy") for i in range(length) if labels[i] != -100]


def pad(samples, pad_id: int):
    length = max(len(s[0]) for s in samples)
    ids = torch.full((len(samples), length), pad_id)
    labels = torch.full((len(samples), length), -100)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for row, (i, lab, _) in enumerate(samples):
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(i)] = 1
    return ids, labels, mask


@torch.no_grad()
def accuracy(model, samples, pad_id: int) -> dict[str, float]:
    model.eval()
    right: dict[str, list[bool]] = {}
    for k in range(0, len(samples), BATCH):  # evaluation chunks, whatever the training batch
        chunk = samples[k : k + BATCH]
        ids, _, mask = pad(chunk, pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for row, (_, _, marks) in enumerate(chunk):
            for start, n, key in marks:
                ok = bool((logits[row, start - 1 : start - 1 + n].argmax(-1) == ids[row, start : start + n]).all())
                right.setdefault(key, []).append(ok)
    model.train()
    return {key: round(100.0 * sum(v) / len(v), 1) for key, v in sorted(right.items())}


def run_probe(
    name: str,
    steps: int,
    init_dir: str,
    tokenizer,
    lr: float,
    seed: int,
    init_range: float | None = None,
    batch: int = BATCH,
    evals: int = 3,
    optimizer_name: str = "adamw",
) -> dict:
    vocab = len(tokenizer)
    pad_id = tokenizer.pad_token_id
    chat = ChatText(tokenizer)
    rng = np.random.default_rng(seed)
    if name == "reading":
        make = lambda s, i: reading_sample(chat, s, i)  # noqa: E731
    elif name in ("options", "option"):
        per_sequence = 8 if name == "options" else 1
        make = lambda s, i: options_sample(chat, s, i, per_sequence)  # noqa: E731
    else:
        fixed = name == "induction-position"
        make = lambda s, i: induction_sample(rng, vocab, fixed)  # noqa: E731
    held_out = [make(seed + 1, i) for i in range(200 if name in ("reading", "options", "option") else 64)]
    model = build_llm(init_dir, seed, init_range)
    from videollama3.training.optim import build_optimizer
    from videollama3.training.recipe import LearningRates, OptimConfig

    # The trainer's own optimizer (AdamW, or Muon for the blocks' matrices as ``optim.optimizer: muon``).
    optimizer = build_optimizer(model, OptimConfig(lr=LearningRates(lr, lr, lr), optimizer=optimizer_name))
    warmup = max(1, int(0.03 * steps))
    checkpoints = {round(steps * (k + 1) / evals) for k in range(evals)}
    curve, losses, started = [], [], time.time()
    for step in range(steps):
        factor = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        ids, labels, mask = pad([make(seed, step * batch + j) for j in range(batch)], pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step + 1 in checkpoints:
            point = {"step": step + 1, "loss": round(sum(losses[-50:]) / len(losses[-50:]), 3)}
            point.update(accuracy(model, held_out, pad_id))
            curve.append(point)
            print(name, json.dumps(point), f"{time.time() - started:.0f}s", flush=True)
    return {"steps": steps, "seconds": round(time.time() - started, 1), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="a synthetic model folder (its tokenizer and LLM config)")
    parser.add_argument("--probes", nargs="+", default=list(DEFAULT_STEPS), choices=list(DEFAULT_STEPS))
    parser.add_argument("--steps", type=int, help="steps of every probe (default: per probe)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the recipe's LLM rate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=BATCH, help="sequences per step (the recipe's: 16)")
    parser.add_argument(
        "--init-range", type=float, help="standard deviation of the random weights (default: the init folder's)"
    )
    parser.add_argument("--optimizer", choices=["adamw", "muon"], default="adamw", help="the LLM's optimizer")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.init)
    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "lr": args.lr,
        "init_range": args.init_range,
        "batch": args.batch,
        "optimizer": args.optimizer,
        "probes": {},
    }
    for name in args.probes:
        results["probes"][name] = run_probe(
            name,
            args.steps or DEFAULT_STEPS[name],
            args.init,
            tokenizer,
            args.lr,
            args.seed,
            args.init_range,
            args.batch,
            optimizer_name=args.optimizer,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["probes"], indent=1))


if __name__ == "__main__":
    main()
