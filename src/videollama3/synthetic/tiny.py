"""The tiny size of the synthetic world: a seconds-long stand-in for CPU demos and the training tests.

The full world (:mod:`.world`, :mod:`.render`, :mod:`.tasks`, :mod:`.writer`) trains the bundled model in
30 minutes; this one is small enough for the ``tiny`` recipe to run its four stages in a few minutes and for
``tests/training`` to build it once per session. :func:`write_tiny_world` writes:

- ``base_dir/llm``: a 2-layer Qwen2 (hidden 64, tied head) with a byte-level BPE tokenizer trained here on the
  data's text (ChatML special tokens, as Qwen's), random weights;
- ``base_dir/siglip``: a 2-layer SigLIP vision tower (hidden 32, patch 14) *with* a learned position embedding
  and a pooling head, so that stage 1 exercises the real SigLIP import (both are dropped);
- ``data_dir``: PNG images and H.264 videos drawn with Pillow / PyAV, and annotation files in the official
  format: ``captions.jsonl`` (one image), ``vqa.json`` (JSON list: single- and multi-image questions, some
  with a system turn), ``video.jsonl`` (a moving dot), ``text.jsonl`` (text-only arithmetic).

Unlike the full world it starts from base parts (an LLM and an encoder that stage 1 assembles), not from a
VideoLLaMA3 checkpoint. Answers are functions of what is drawn (colour and shape names, motion directions,
sums), so the loss has something real to learn in every stage. Everything is seeded: the same call writes
the same files.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")
MOVES = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
IMAGE_SIZE = (84, 56)  # (width, height): 6 x 4 patches of 14
VIDEO_SIZE = 56
VIDEO_SECONDS = 4
VIDEO_FPS = 4


def _draw_shape(color: str, shape: str, background: tuple[int, int, int], size=IMAGE_SIZE, seed: int = 0):
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    r = rng.randint(12, 18)
    cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLORS[color])
    return image


def _write_video(path: Path, direction: str, color: str, seed: int) -> None:
    import av
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    dx, dy = MOVES[direction]
    n = VIDEO_SECONDS * VIDEO_FPS
    step = (VIDEO_SIZE - 24) / (n - 1)
    x0 = 12 if dx > 0 else (VIDEO_SIZE - 12 if dx < 0 else rng.randint(14, VIDEO_SIZE - 14))
    y0 = 12 if dy > 0 else (VIDEO_SIZE - 12 if dy < 0 else rng.randint(14, VIDEO_SIZE - 14))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width = stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for k in range(n):
            frame = Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), (235, 235, 235))
            x, y = x0 + dx * step * k, y0 + dy * step * k
            ImageDraw.Draw(frame).ellipse((x - 8, y - 8, x + 8, y + 8), fill=COLORS[color])
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write_tiny_data(folder: str | os.PathLike, num_samples: int = 48, seed: int = 0) -> dict[str, Path]:
    """Images, videos and the four annotation files; returns {name: annotation path}."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    backgrounds = [(250, 250, 250), (30, 30, 30), (200, 200, 170)]

    def image(i: int) -> tuple[str, str, str]:
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        name = f"images/{i:04d}.png"
        _draw_shape(color, shape, rng.choice(backgrounds), seed=seed * 100003 + i).save(folder / name)
        return name, color, shape

    captions, vqa, videos, texts = [], [], [], []
    for i in range(num_samples):
        name, color, shape = image(i)
        captions.append(
            {
                "image": name,
                "conversations": [
                    {"from": "human", "value": "<image>\nDescribe the image."},
                    {"from": "gpt", "value": f"A {color} {shape}."},
                ],
            }
        )
    for i in range(num_samples):
        if i % 3 == 2:  # multi-image
            (a, ca, _), (b, cb, _) = image(1000 + 2 * i), image(1001 + 2 * i)
            vqa.append(
                {
                    "image": [a, b],
                    "conversations": [
                        {"from": "human", "value": "<image>\n<image>\nAre the two shapes the same color?"},
                        {"from": "gpt", "value": "Yes." if ca == cb else f"No, {ca} and {cb}."},
                    ],
                }
            )
            continue
        name, color, shape = image(1000 + 2 * i)
        turns = [
            {"from": "human", "value": "<image>\nWhat color is the shape?"},
            {"from": "gpt", "value": f"{color.capitalize()}."},
            {"from": "human", "value": "And its shape?"},
            {"from": "gpt", "value": f"A {shape}."},
        ]
        if i % 3 == 1:
            turns.insert(0, {"from": "system", "value": "Answer briefly."})
        vqa.append({"image": name, "conversations": turns})
    for i in range(num_samples):
        direction, color = rng.choice(list(MOVES)), rng.choice(list(COLORS))
        name = f"videos/{i:04d}.mp4"
        _write_video(folder / name, direction, color, seed * 7919 + i)
        videos.append(
            {
                "video": [name],
                "conversations": [
                    {"from": "human", "value": "<video>\nWhich way does the dot move?"},
                    {"from": "gpt", "value": f"The {color} dot moves {direction}."},
                ],
            }
        )
    for _ in range(num_samples):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        texts.append(
            {
                "conversations": [
                    {"from": "human", "value": f"What is {a} plus {b}?"},
                    {"from": "gpt", "value": f"{a} plus {b} is {a + b}."},
                ]
            }
        )
    files = {
        "captions": folder / "captions.jsonl",
        "vqa": folder / "vqa.json",
        "video": folder / "video.jsonl",
        "text": folder / "text.jsonl",
    }
    _write_jsonl(files["captions"], captions)
    files["vqa"].write_text(json.dumps(vqa, indent=1))
    _write_jsonl(files["video"], videos)
    _write_jsonl(files["text"], texts)
    return files


def _corpus() -> list[str]:
    words = list(COLORS) + [c.capitalize() for c in COLORS] + list(SHAPES) + list(MOVES)
    lines = [
        "Describe the image. A the dot moves. What color is the shape? And its shape? Yes. No, and",
        "Are the two shapes the same color? Which way does the dot move? Answer briefly. What is plus is",
        "user assistant system You are VideoLLaMA3 created by Alibaba DAMO Academy, a helpful assistant "
        "to help people understand images and videos. Time s:",
        " ".join(words),
        " ".join(str(i) for i in range(20)),
    ]
    return lines * 4


def build_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with Qwen2's special tokens (no VideoLLaMA3 tokens yet)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=specials[1:]
    )
    tokenizer.model_max_length = 32768
    return tokenizer


def write_tiny_world(
    data_dir: str | os.PathLike, base_dir: str | os.PathLike, num_samples: int = 48, seed: int = 0
) -> dict[str, Path]:
    """Write ``base_dir/llm``, ``base_dir/siglip`` and the data in ``data_dir``; return their paths.

    Returns:
        ``{"llm": ..., "siglip": ..., "data": ..., "captions": ..., "vqa": ..., "video": ..., "text": ...}``
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from ..training.checkpointing import atomic_directory

    paths = {"llm": Path(base_dir) / "llm", "siglip": Path(base_dir) / "siglip", "data": Path(data_dir)}
    torch.manual_seed(seed)
    with atomic_directory(paths["llm"]) as tmp:
        tokenizer = build_tiny_tokenizer()
        config = Qwen2Config(
            vocab_size=((len(tokenizer) + len(("<image>", "<|stream_start|>", "<|stream_end|>")) + 63) // 64) * 64,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )
        Qwen2ForCausalLM(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    with atomic_directory(paths["siglip"]) as tmp:
        vision = SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=14,
            image_size=56,
        )
        SiglipVisionModel(vision).save_pretrained(tmp)
    with atomic_directory(paths["data"]) as tmp:
        files = write_tiny_data(tmp, num_samples=num_samples, seed=seed)
    paths.update({name: paths["data"] / path.name for name, path in files.items()})
    return paths
