"""Write the synthetic world to disk: media files and annotations in the official training format.

Layout of a dataset folder (all media paths in the annotations are relative to it)::

    images/000000.png ...            84 x 84 PNG
    videos/000000.mp4 ...            84 x 84 H.264, 8 fps, 6-8 s
    image_captions.jsonl             {"image": "images/000000.png", "conversations": [human, gpt]}
    video_captions.jsonl             {"video": ["videos/000000.mp4"], "conversations": [...]}
    image_qa.jsonl                   multi-turn question answering on each image
    video_qa.jsonl                   multi-turn temporal question answering on each video
    text.jsonl                       text-only instructions (no media key)
    stream.jsonl                     live narration of each video: streaming records (synthetic/narration.py)
    meta.json                        spec (seed, counts), generator version, file list

The first human turn starts with ``<image>\\n`` / ``<video>\\n``. A fraction of the records (``system_ratio``)
starts with a system turn holding VideoLLaMA3's default system prompt, so that the model answers the same
with and without ``add_system_prompt``.

A held-out benchmark (:func:`write_benchmark`) has one question per record with its task, answer and
options, in ``benchmark.jsonl``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import narration, render, tasks, world

IMAGE_CAPTION_PROMPTS = ("Describe the image.", "What is in the image?", "Describe this image briefly.")
VIDEO_CAPTION_PROMPTS = ("Describe the video.", "What happens in the video?", "Describe what happens, with times.")
ANNOTATION_FILES = ("image_captions.jsonl", "video_captions.jsonl", "image_qa.jsonl", "video_qa.jsonl", "text.jsonl")
STREAM_FILE = "stream.jsonl"  # streaming records (docs/streaming.md), not in the conversations format
BENCHMARK_FILE = "benchmark.jsonl"
FORMAT_VERSION = 1


@functools.cache
def generator_fingerprint() -> str:
    """Digest of the code that generates the world. Data (or a benchmark) written by another version is
    never reused: it would train or score a model on questions the current world does not ask."""
    digest = hashlib.sha256()
    for module in ("world.py", "tasks.py", "render.py", "writer.py", "narration.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class WorldSpec:
    """What to generate. Items of a kind are numbered from 0, so two specs with one seed share items."""

    seed: int = 0
    images: int = 100
    videos: int = 50
    texts: int | None = None  # default: half the number of images
    questions_per_image: int = 4
    questions_per_video: int = 4
    questions_per_text: int = 3
    system_ratio: float = 0.3
    image_size: int = render.IMAGE_SIZE
    video_size: int = render.VIDEO_SIZE
    video_fps: int = 8

    @property
    def num_texts(self) -> int:
        return self.images // 2 if self.texts is None else self.texts


def _written_meta(folder: Path) -> dict | None:
    """The ``meta.json`` of a dataset folder (``None``: none, so no complete dataset is there)."""
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def dataset_mismatch(folder: str | os.PathLike, spec: WorldSpec) -> str | None:
    """Why the dataset already in ``folder`` is not what ``spec`` and the current generator would write
    (``None``: it is, or there is none)."""
    meta = _written_meta(Path(folder))
    if meta is None:
        return None
    written = meta.get("generator")
    if written != generator_fingerprint():
        return (
            "it was rendered by another version of the world generator "
            f"({written or 'unrecorded'}, now {generator_fingerprint()})"
        )
    differing = [f"{k} {meta['spec'].get(k)!r} vs {v!r}" for k, v in asdict(spec).items() if meta["spec"].get(k) != v]
    if differing:
        return "it was rendered for another world spec (" + ", ".join(differing) + ")"
    return None


def _system_turn(rng: np.random.Generator, ratio: float) -> list[dict]:
    from ..processing.chat_template import DEFAULT_SYSTEM_PROMPT

    return [{"from": "system", "value": DEFAULT_SYSTEM_PROMPT}] if rng.random() < ratio else []


def _conversation(tag: str, turns: list[tuple[str, str]], system: list[dict]) -> list[dict]:
    out = list(system)
    for k, (question, answer) in enumerate(turns):
        value = f"{tag}\n{question}" if k == 0 and tag else question
        out += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return out


def image_records(spec: WorldSpec, index: int, rel_path: str) -> tuple[dict, dict]:
    """(caption record, QA record) of image ``index``."""
    scene = world.sample_image_scene(spec.seed, index)
    rng = tasks.qa_rng(spec.seed, index, 10)
    prompt = IMAGE_CAPTION_PROMPTS[int(rng.integers(len(IMAGE_CAPTION_PROMPTS)))]
    caption = {
        "image": rel_path,
        "conversations": _conversation(
            "<image>", [(prompt, tasks.image_caption(scene))], _system_turn(rng, spec.system_ratio)
        ),
    }
    qas = tasks.select_questions(tasks.image_questions(scene, rng), rng, spec.questions_per_image)
    qa = {
        "image": rel_path,
        "conversations": _conversation(
            "<image>", [(q.prompt, q.answer) for q in qas], _system_turn(rng, spec.system_ratio)
        ),
        "tasks": [q.task for q in qas],
    }
    return caption, qa


def video_records(spec: WorldSpec, index: int, rel_path: str) -> tuple[dict, dict]:
    """(caption record, QA record) of video ``index``."""
    scene = world.sample_video_scene(spec.seed, index, fps=spec.video_fps)
    rng = tasks.qa_rng(spec.seed, index, 11)
    prompt = VIDEO_CAPTION_PROMPTS[int(rng.integers(len(VIDEO_CAPTION_PROMPTS)))]
    caption = {
        "video": [rel_path],
        "conversations": _conversation(
            "<video>", [(prompt, tasks.video_caption(scene))], _system_turn(rng, spec.system_ratio)
        ),
    }
    qas = tasks.select_questions(tasks.video_questions(scene, rng), rng, spec.questions_per_video)
    qa = {
        "video": [rel_path],
        "conversations": _conversation(
            "<video>", [(q.prompt, q.answer) for q in qas], _system_turn(rng, spec.system_ratio)
        ),
        "tasks": [q.task for q in qas],
    }
    return caption, qa


def stream_record(spec: WorldSpec, index: int, rel_path: str) -> dict:
    """The live-narration streaming record of video ``index`` (:func:`.narration.stream_record`)."""
    scene = world.sample_video_scene(spec.seed, index, fps=spec.video_fps)
    return narration.stream_record(scene, rel_path, tasks.qa_rng(spec.seed, index, 13))


def text_record(spec: WorldSpec, index: int) -> dict:
    qas = tasks.text_conversation(spec.seed, index, spec.questions_per_text)
    rng = tasks.qa_rng(spec.seed, index, 12)
    return {
        "conversations": _conversation("", [(q.prompt, q.answer) for q in qas], _system_turn(rng, spec.system_ratio)),
        "tasks": [q.task for q in qas],
    }


def render_image_file(spec: WorldSpec, index: int, path: Path) -> None:
    scene = world.sample_image_scene(spec.seed, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    render.render_image(scene, spec.image_size).save(path)


def render_video_file(spec: WorldSpec, index: int, path: Path) -> None:
    scene = world.sample_video_scene(spec.seed, index, fps=spec.video_fps)
    render.write_video(render.render_video(scene, spec.video_size), path, scene.fps)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, dynamic_ncols=True)


def write_dataset(
    out: str | os.PathLike, spec: WorldSpec, progress: bool = True, log: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Render every item of ``spec`` under ``out`` and write the annotation files; returns {name: path}.

    Media files that already exist are kept when the folder was written by the same generator (so a larger
    dataset with the same seed extends a smaller one); otherwise every item is rendered again. Annotation
    files are rewritten.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = _written_meta(out)
    reuse_media = written is not None and written.get("generator") == generator_fingerprint()
    (out / "meta.json").unlink(missing_ok=True)  # written last: a folder without it is incomplete
    files = {name: out / name for name in (*ANNOTATION_FILES, STREAM_FILE)}
    handles = {name: open(path, "w") for name, path in files.items()}  # noqa: SIM115 - closed below
    bar = _progress(spec.images + spec.videos + spec.num_texts, "synthetic world", progress)
    try:
        for i in range(spec.images):
            rel = f"images/{i:06d}.png"
            if not (reuse_media and (out / rel).is_file()):
                render_image_file(spec, i, out / rel)
            caption, qa = image_records(spec, i, rel)
            handles["image_captions.jsonl"].write(json.dumps(caption) + "\n")
            handles["image_qa.jsonl"].write(json.dumps(qa) + "\n")
            bar.update(1)
        for i in range(spec.videos):
            rel = f"videos/{i:06d}.mp4"
            if not (reuse_media and (out / rel).is_file()):
                render_video_file(spec, i, out / rel)
            caption, qa = video_records(spec, i, rel)
            handles["video_captions.jsonl"].write(json.dumps(caption) + "\n")
            handles["video_qa.jsonl"].write(json.dumps(qa) + "\n")
            handles[STREAM_FILE].write(json.dumps(stream_record(spec, i, rel)) + "\n")
            bar.update(1)
        for i in range(spec.num_texts):
            handles["text.jsonl"].write(json.dumps(text_record(spec, i)) + "\n")
            bar.update(1)
    finally:
        bar.close()
        for h in handles.values():
            h.close()
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": generator_fingerprint(),
        "spec": asdict(spec),
        "files": {name: str(path.relative_to(out)) for name, path in files.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if log:
        log(f"wrote {spec.images} images, {spec.videos} videos, {spec.num_texts} text samples to {out}")
    return files


# ---------------------------------------------------------------------------------------------- benchmark
@dataclass
class BenchmarkItem:
    """One held-out question: its media (relative path, or None for text), the QA and its modality."""

    id: str
    modality: str  # "image" | "video" | "text"
    media: str | None
    qa: tasks.QA

    def to_dict(self) -> dict:
        qa = self.qa
        return {
            "id": self.id,
            "modality": self.modality,
            "media": self.media,
            "question": qa.question,
            "options": qa.options,
            "prompt": qa.prompt,
            "answer": qa.answer,
            "task": qa.task,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BenchmarkItem:
        return cls(d["id"], d["modality"], d["media"], tasks.QA(d["question"], d["answer"], d["task"], d["options"]))


# Held-out benchmarks draw from seeds far from the training seeds (0, 1, ...).
BENCHMARK_SEED_OFFSET = 1_000_003


def benchmark_items(seed: int, images: int, videos: int, texts: int = 0) -> list[BenchmarkItem]:
    """Questions of the held-out benchmark ``seed``: for each item, one question of a task drawn uniformly
    among the tasks the item supports (so that rare tasks are measured too)."""
    world_seed = BENCHMARK_SEED_OFFSET + seed
    items: list[BenchmarkItem] = []
    for i in range(images):
        scene = world.sample_image_scene(world_seed, i)
        rng = tasks.qa_rng(world_seed, i, 20)
        (qa,) = tasks.select_questions(tasks.image_questions(scene, rng), rng, 1)
        items.append(BenchmarkItem(f"image-{i}", "image", f"images/{i:06d}.png", qa))
    for i in range(videos):
        scene = world.sample_video_scene(world_seed, i)
        rng = tasks.qa_rng(world_seed, i, 21)
        (qa,) = tasks.select_questions(tasks.video_questions(scene, rng), rng, 1)
        items.append(BenchmarkItem(f"video-{i}", "video", f"videos/{i:06d}.mp4", qa))
    for i in range(texts):
        rng = tasks.qa_rng(world_seed, i, 22)
        (qa,) = tasks.select_questions(tasks.text_questions(rng), rng, 1)
        items.append(BenchmarkItem(f"text-{i}", "text", None, qa))
    return items


def write_benchmark(
    out: str | os.PathLike, seed: int = 0, images: int = 200, videos: int = 200, texts: int = 50, progress: bool = True
) -> Path:
    """Render the held-out benchmark ``seed`` under ``out``; returns the ``benchmark.jsonl`` path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = WorldSpec(seed=BENCHMARK_SEED_OFFSET + seed)
    items = benchmark_items(seed, images, videos, texts)
    bar = _progress(images + videos, "synthetic benchmark", progress)
    try:
        for item in items:
            if item.media is None:
                continue
            index = int(item.id.split("-")[1])
            path = out / item.media
            if not path.is_file():
                if item.modality == "image":
                    render_image_file(spec, index, path)
                else:
                    render_video_file(spec, index, path)
            bar.update(1)
    finally:
        bar.close()
    file = out / BENCHMARK_FILE
    file.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in items))
    meta = {"format_version": FORMAT_VERSION, "benchmark_seed": seed, "images": images, "videos": videos}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return file


def read_benchmark(folder: str | os.PathLike) -> list[BenchmarkItem]:
    path = Path(folder) / BENCHMARK_FILE
    return [BenchmarkItem.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
