"""Learnability probes on the synthetic world: which image questions can the small model learn, and when?

Trains the small VideoLLaMA3 (from a random initialisation) on image questions of one kind of scene for a
few hundred steps, entirely in memory (rendered images, processor outputs and padded batches are built
once, so a step costs only the forward and backward pass), and reports the held-out accuracy per task every
``--eval-every`` steps. An answer counts as right when every one of its tokens is the argmax under teacher
forcing. The results are in research/experiments.md ("Learnability probes").

    python research/synthetic_probe.py --init runs/synthetic/init --single --tasks colour --vision-lr 0
    python research/synthetic_probe.py --init runs/synthetic/init --tasks all --qper 4 --mc --steps 600

``--init`` is a random initial model folder (``videollama3 train synthetic`` writes one to
runs/synthetic/init); without it one is built in a temporary folder (tokenizer training included, ~1 min).
``--vision-lr 0`` keeps the vision encoder frozen at its random initialisation.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import numpy as np
import torch


def build_samples(processor, chat_tokens, seed: int, count: int, args) -> list[dict]:
    """``count`` single-image conversations with ``args.qper`` questions each, processed once."""
    from videollama3.synthetic import render, tasks, world
    from videollama3.training.labels import supervised_labels

    wanted = set(args.tasks.split(","))
    samples, index = [], 0
    while len(samples) < count:
        index += 1
        scene = world.sample_image_scene(seed, index, kind=None if args.all_kinds else "count")
        if args.single:
            scene.shapes = scene.shapes[:1]
        rng = tasks.qa_rng(seed, index, 0)
        questions = [
            q
            for q in tasks.image_questions(scene, rng)
            if ("all" in wanted or q.task in wanted) and (args.mc or not q.options)
        ]
        if not questions:
            continue
        questions = [questions[int(rng.integers(len(questions)))] for _ in range(args.qper)]
        image = render.render_image(scene, size=args.size)
        if args.caption:
            questions = [tasks.QA("Describe the image.", tasks.image_caption(scene), "caption"), *questions]
        first, *rest = questions
        content = [{"type": "image", "image": image}, {"type": "text", "text": first.prompt}]
        if args.question_first:
            content.reverse()
        conversation = [
            {"role": "user", "content": content},
            {"role": "assistant", "content": first.answer},
        ]
        for q in rest:
            conversation += [{"role": "user", "content": q.prompt}, {"role": "assistant", "content": q.answer}]
        batch = processor(conversation=conversation, return_tensors="pt")
        ids = batch["input_ids"][0]
        samples.append(
            {
                "ids": ids,
                "labels": supervised_labels(ids, chat_tokens),
                "pixel_values": batch["pixel_values"],
                "grid_sizes": batch["grid_sizes"],
                "merge_sizes": batch["merge_sizes"],
                "tasks": [q.task for q in questions],
            }
        )
    return samples


def collate(samples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch."""
    length = max(len(s["ids"]) for s in samples)
    ids = torch.full((len(samples), length), pad_id)
    labels = torch.full((len(samples), length), -100)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s["ids"])
        ids[row, :n], labels[row, :n], mask[row, :n] = s["ids"], s["labels"], 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
        "grid_sizes": torch.cat([s["grid_sizes"] for s in samples]),
        "merge_sizes": torch.cat([s["merge_sizes"] for s in samples]),
    }


def answer_spans(labels: torch.Tensor) -> list[list[int]]:
    """Positions (in the shifted target row) of each supervised answer, in order."""
    spans, current = [], []
    for i, supervised in enumerate((labels != -100).tolist()):
        if supervised:
            current.append(i)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


@torch.no_grad()
def accuracy(model, samples: list[dict], pad_id: int) -> dict[str, float]:
    """Teacher-forced exact-answer accuracy per task (percent), and ``all``."""
    model.eval()
    results: dict[str, list[bool]] = {}
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        batch = collate(chunk, pad_id)
        labels = batch.pop("labels")
        predicted = model(**batch).logits[:, :-1].argmax(-1)
        targets = labels[:, 1:]
        for row, sample in enumerate(chunk):
            for span, task in zip(answer_spans(targets[row]), sample["tasks"]):
                results.setdefault(task, []).append(bool((predicted[row, span] == targets[row, span]).all()))
    model.train()
    out = {task: round(100 * float(np.mean(v)), 1) for task, v in sorted(results.items())}
    out["all"] = round(100 * float(np.mean([x for v in results.values() for x in v])), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", help="random initial model folder (default: build one)")
    parser.add_argument("--tasks", default="colour", help="comma-separated image tasks, or 'all'")
    parser.add_argument("--single", action="store_true", help="one object per image")
    parser.add_argument("--all-kinds", action="store_true", help="text and chart images too, not only shapes")
    parser.add_argument("--mc", action="store_true", help="multiple-choice questions too")
    parser.add_argument("--question-first", action="store_true", help="the first question before the image")
    parser.add_argument("--qper", type=int, default=2, help="questions per conversation")
    parser.add_argument("--train", type=int, default=3000, help="training conversations")
    parser.add_argument("--test", type=int, default=200, help="held-out conversations (another seed)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="LLM learning rate")
    parser.add_argument("--projector-lr", type=float, default=1e-3)
    parser.add_argument("--vision-lr", type=float, default=1e-3, help="0 freezes the encoder")
    parser.add_argument("--vision-start", type=int, default=0, help="step from which the encoder trains")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--caption", action="store_true", help="a caption turn before the questions")
    parser.add_argument("--curriculum", type=int, default=0, help="steps on one-object images first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=112, help="rendered image side (pixels)")
    parser.add_argument("--image-merge", type=int, default=1, help="spatial merge of images")
    args = parser.parse_args()

    from videollama3 import VideoLLaMA3ForCausalLM, VideoLLaMA3Processor
    from videollama3.synthetic.model import build_initial_model
    from videollama3.training.labels import ChatTokens

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    init = args.init or str(build_initial_model(tempfile.mkdtemp(prefix="videollama3-probe-")))
    processor = VideoLLaMA3Processor.from_pretrained(init)
    processor.image_merge_size = args.image_merge
    processor.image_processor.min_tokens = 4
    model = VideoLLaMA3ForCausalLM.from_pretrained(init, dtype=torch.float32)
    pad_id = processor.tokenizer.pad_token_id
    chat_tokens = ChatTokens.from_tokenizer(processor.tokenizer)

    started = time.perf_counter()
    train = build_samples(processor, chat_tokens, 0, args.train, args)
    test = build_samples(processor, chat_tokens, 77, args.test, args)
    single = None
    if args.curriculum:
        args.single = True
        single = build_samples(processor, chat_tokens, 5, args.train // 2, args)
        args.single = False
    print(f"data: {len(train)} train / {len(test)} test conversations in {time.perf_counter() - started:.0f} s")

    rates = {"llm": args.lr, "projector": args.projector_lr, "vision": args.vision_lr}
    params: dict[str, list] = {name: [] for name in rates}
    for name, param in model.named_parameters():
        part = "vision" if "vision_encoder" in name else "projector" if "mm_projector" in name else "llm"
        params[part].append(param)
    groups = []
    for part, rate in rates.items():
        if rate > 0:
            groups.append({"params": params[part], "lr": rate, "part": part})
        else:
            for param in params[part]:
                param.requires_grad_(False)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0, betas=(0.9, 0.98))

    print(f"step 0: {accuracy(model, test, pad_id)}", flush=True)
    sampler = random.Random(0)
    started, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:  # 20-step warmup; the encoder's starts at --vision-start
            begin = args.vision_start if group["part"] == "vision" else 0
            warm = 50 if group["part"] == "vision" and args.vision_start else 20
            group["lr"] = rates[group["part"]] * min(1.0, max(step - begin, 0) / warm)
        pool = single if step <= args.curriculum else train
        loss = model(**collate(sampler.sample(pool, args.batch_size), pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % args.eval_every == 0:
            seconds = (time.perf_counter() - started) / step
            mean_loss = np.mean(losses[-args.eval_every :])
            print(
                f"step {step}: loss {mean_loss:.3f}, {seconds:.2f} s/step, {accuracy(model, test, pad_id)}", flush=True
            )


if __name__ == "__main__":
    main()
