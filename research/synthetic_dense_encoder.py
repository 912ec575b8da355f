"""Probe: pretrain the small vision encoder on dense labels of the synthetic world, as a stand-in for SigLIP.

The paper's stage 1 adapts an encoder that already separates objects (SigLIP); the bundled model's encoder
starts random. This script gives the same architecture a perception pretraining that the synthetic world
makes free: every 14-pixel patch of a shape scene is labelled with the colour, shape, size and grid cell of
the object covering most of it (background otherwise), and the encoder is trained with one linear head per
label (background patches weighted 0.2). It prints the held-out per-patch accuracy on object patches, and
saves the whole model (LLM and projector untouched) for ``research/synthetic_probe.py --init OUT``.
The results are in research/experiments.md ("Learnability probes").

    python research/synthetic_dense_encoder.py --init runs/synthetic/init --out runs/dense-init --steps 600
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

LABELS = ("colour", "shape", "size", "cell")


def patch_labels(scene, grid: int, patch: int) -> torch.Tensor:
    """(4, grid * grid) class ids per patch (0 = background): the object covering most of the patch, if it
    covers at least 12 % of it."""
    from videollama3.synthetic import render, world

    vocab = (list(world.COLOURS), list(world.SHAPES), list(world.SIZES), list(world.POSITIONS))
    labels = np.zeros((len(LABELS), grid, grid), dtype=np.int64)
    best = np.zeros((grid, grid))
    for obj in scene.shapes:
        mask = Image.new("L", (grid * patch, grid * patch), 0)
        render.draw_shape(ImageDraw.Draw(mask), obj, grid * patch, grid * patch, colour=255)
        cover = np.asarray(mask, np.float32).reshape(grid, patch, grid, patch).mean(axis=(1, 3)) / 255
        chosen = (cover > 0.12) & (cover > best)
        best = np.where(chosen, cover, best)
        for k, value in enumerate((obj.colour, obj.shape, obj.size, obj.cell)):
            labels[k][chosen] = vocab[k].index(value) + 1
    return torch.from_numpy(labels.reshape(len(LABELS), -1))


def build(processor, seed: int, count: int) -> list[tuple]:
    from videollama3.synthetic import render, world

    patch = processor.image_processor.patch_size
    items = []
    for index in range(1, count + 1):
        scene = world.sample_image_scene(seed, index, kind="count")
        image = render.render_image(scene)
        conversation = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "?"}]}]
        batch = processor(conversation=conversation, return_tensors="pt")
        grid = int(batch["grid_sizes"][0, 1])
        items.append(
            (batch["pixel_values"], batch["grid_sizes"], batch["merge_sizes"], patch_labels(scene, grid, patch))
        )
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="initial model folder (runs/synthetic/init)")
    parser.add_argument("--out", required=True, help="where to save the model with the pretrained encoder")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--train", type=int, default=4000, help="training images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    from videollama3 import VideoLLaMA3ForCausalLM, VideoLLaMA3Processor

    torch.manual_seed(0)
    processor = VideoLLaMA3Processor.from_pretrained(args.init)
    model = VideoLLaMA3ForCausalLM.from_pretrained(args.init, dtype=torch.float32)
    encoder = model.vision_encoder
    started = time.perf_counter()
    train, test = build(processor, 0, args.train), build(processor, 77, 300)
    print(f"data: {len(train)} train / {len(test)} test images in {time.perf_counter() - started:.0f} s", flush=True)

    classes = (7, 6, 3, 10)  # background + 6 colours, 5 shapes, 2 sizes, 9 cells
    heads = torch.nn.ModuleList(torch.nn.Linear(encoder.config.hidden_size, n) for n in classes)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=args.lr, weight_decay=0.0)

    def forward(items):
        features = encoder(*(torch.cat([item[k] for item in items]) for k in range(3)))  # (patches, D)
        labels = torch.cat([item[3] for item in items], dim=1)  # (4, patches)
        return [head(features) for head in heads], labels

    @torch.no_grad()
    def accuracy() -> dict[str, float]:
        logits, labels = forward(test)
        on_object = labels[0] > 0
        return {
            name: round(100 * float((out.argmax(-1)[on_object] == y[on_object]).float().mean()), 1)
            for name, out, y in zip(LABELS, logits, labels)
        }

    print(f"step 0: {accuracy()}", flush=True)
    sampler = random.Random(0)
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:  # 30-step warm-up, cosine decay
            group["lr"] = args.lr * min(1.0, step / 30) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        logits, labels = forward(sampler.sample(train, args.batch_size))
        weights = torch.where(labels > 0, 1.0, 0.2)
        loss = sum(
            (torch.nn.functional.cross_entropy(out, y, reduction="none") * w).mean()
            for out, y, w in zip(logits, labels, weights)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}, per-patch accuracy on objects {accuracy()}", flush=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
