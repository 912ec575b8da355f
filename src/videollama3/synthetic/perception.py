"""Perception pretraining of the small vision encoder: the synthetic world's stand-in for SigLIP.

VideoLLaMA3 starts from a pretrained encoder (SigLIP) whose tokens already say what the image shows; the
small model's encoder starts random, and trained end to end from a random LLM its tokens collapse to one
shared vector (research/experiments.md). So before the four stages, the encoder alone learns to see the world:
every merged token (one per cell of the 3 x 3 grid at the world's 84 x 84 size) is trained with one linear
head per attribute to predict what the whole picture shows: the object's colour, shape, size and cell, how
many objects there are, the word and its colour, the tallest and the shortest bar and their values. The
same label on every token (SigLIP's tokens carry the image's gist too) means that any token of a frame,
such as one kept alone by frame pruning, says what the frame shows.

Pictures are the world's images and frames of its videos at random times (objects half-way through a move,
hidden, or changed colour included). The heads are thrown away; only the encoder's weights are kept
(:func:`pretrain_encoder`). The reading of the word and the comparison of the bars form abruptly, late in
training: the ``synthetic`` recipe's 6000 steps in bf16 take about 7 minutes on two CPU cores.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import torch
from torch import nn

from . import render, world

# name -> classes (0 always means "none" / "not this kind of picture")
HEADS: dict[str, list[str]] = {
    "colour": ["none", *world.COLOURS, "black", "white"],
    "shape": ["none", *world.SHAPES],
    "size": ["none", *world.SIZES],
    "position": ["none", *world.POSITIONS.values()],
    "count": [str(k) for k in range(10)],
    "word": ["none", *world.WORDS],
    "tallest": ["none", *world.BAR_LABELS],
    "shortest": ["none", *world.BAR_LABELS],
    "max_value": [str(k) for k in range(10)],
    "min_value": [str(k) for k in range(10)],
}
GRID = 3  # merged tokens per side at the world's size


def picture_labels(kind: str, scene) -> dict[str, int]:
    """Picture-level class ids of an :class:`~.world.ImageScene` (``kind`` = its kind) or of the
    :class:`~.world.ObjectState` list of a video frame (``kind`` = ``"frame"``)."""
    labels = {name: 0 for name in HEADS}
    if kind == "frame":
        objects = [s for s in scene if s.visible]
    elif kind in ("object", "count"):
        objects = scene.shapes
    else:
        objects = []
    labels["count"] = len(objects)
    if objects:
        o = objects[0]
        labels["colour"] = HEADS["colour"].index(o.colour)
        labels["shape"] = HEADS["shape"].index(o.shape)
        labels["size"] = HEADS["size"].index(o.size)
        if len(objects) == 1:  # the cell under the object's centre (mid-move: the nearer one)
            row, col = min(int(o.y * GRID), GRID - 1), min(int(o.x * GRID), GRID - 1)
            labels["position"] = 1 + row * GRID + col
    if kind == "text":
        labels["word"] = HEADS["word"].index(scene.text.word)
        labels["colour"] = HEADS["colour"].index(scene.text.colour)
    if kind == "chart":
        chart = scene.chart
        tallest, shortest = int(np.argmax(chart.values)), int(np.argmin(chart.values))
        labels.update(
            colour=HEADS["colour"].index(chart.colour),
            tallest=1 + tallest,
            shortest=1 + shortest,
            max_value=chart.values[tallest],
            min_value=chart.values[shortest],
        )
    return labels


def sample_picture(seed: int, index: int) -> tuple[np.ndarray, dict[str, int]]:
    """Picture ``index``: an image of the world (two thirds) or a frame of one of its videos."""
    rng = world.item_rng(seed, 97, index)
    if rng.random() < 2 / 3:
        scene = world.sample_image_scene(seed, index)
        return np.asarray(render.render_image(scene)), picture_labels(scene.kind, scene)
    scene = world.sample_video_scene(seed, index)
    t = float(rng.uniform(0, scene.duration))
    return render.render_frame(scene, t), picture_labels("frame", scene.state_at(t))


def _batch(processor, pictures: list[np.ndarray]) -> dict[str, torch.Tensor]:
    out = processor.image_processor(
        images=[[p] for p in pictures], merge_size=processor.image_merge_size, return_tensors="pt"
    )
    return {k: out[k] for k in ("pixel_values", "grid_sizes", "merge_sizes")}


def pretrain_encoder(
    model,
    processor,
    steps: int = 1500,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 2e-3,
    log_every: int = 100,
    precision: str = "fp32",
) -> dict[str, float]:
    """Train ``model.vision_encoder`` in place on :data:`HEADS`; returns the held-out accuracy per head (%)
    on the pictures that show the attribute (:func:`shown_accuracy`), measured in fp32.

    ``precision`` "bf16" trains under bf16 autocast (fp32 weights and optimizer), as the recipe's stages do.

    ``processor`` must merge images 2 x 2 at the world's size (the small model's processor files do)."""
    from tqdm.auto import tqdm

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision {precision!r}: expected 'fp32' or 'bf16'")
    encoder = model.vision_encoder
    tokens = GRID * GRID
    generator = torch.Generator().manual_seed(seed)
    heads = nn.ModuleDict({name: nn.Linear(encoder.config.hidden_size, len(c)) for name, c in HEADS.items()})
    for head in heads.values():  # deterministic regardless of the global RNG
        nn.init.normal_(head.weight, std=0.02, generator=generator)
        nn.init.zeros_(head.bias)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=lr, weight_decay=0.0)

    def head_outputs(pictures, labels) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{head: (logits (B * 9, classes), targets (B * 9,))}"""
        features = encoder(**_batch(processor, pictures))  # (B * 9, D)
        if features.shape[0] != len(pictures) * tokens:
            raise ValueError(f"expected {tokens} merged tokens per picture, got {features.shape[0] / len(pictures)}")
        return {
            name: (head(features), torch.tensor([lab[name] for lab in labels]).repeat_interleave(tokens))
            for name, head in heads.items()
        }

    held_out = [sample_picture(seed + 7919, i) for i in range(256)]
    picker = random.Random(seed)
    encoder.train()
    started = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc="perception pretraining", unit="step", mininterval=2)
    for step in bar:
        for group in optimizer.param_groups:  # warm-up, then cosine decay
            group["lr"] = lr * min(1.0, step / 30) * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = [sample_picture(seed, picker.randrange(1 << 30)) for _ in range(batch_size)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = head_outputs([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(nn.functional.cross_entropy(logits.float(), target) for logits, target in outputs.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    with torch.no_grad():
        outputs = head_outputs([h[0] for h in held_out], [h[1] for h in held_out])
    accuracy = {name: shown_accuracy(logits, target) for name, (logits, target) in outputs.items()}
    print(
        f"perception pretraining: {steps} steps in {time.perf_counter() - started:.0f} s; held-out accuracy "
        f"on the pictures that show each attribute {accuracy}"
    )
    return accuracy


def shown_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Accuracy (%) over the tokens of pictures that show the attribute (class 0 is "none", or no objects).

    Counting "none" in would flatter a head: most pictures show no word or no chart, and a head that
    always answers "none" would score well without reading anything."""
    shown = target != 0
    if not shown.any():
        return float("nan")
    return round(100 * (logits[shown].argmax(-1) == target[shown]).float().mean().item(), 1)
