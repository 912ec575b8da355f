"""``videollama3 demo``: render a fresh synthetic video (or image), ask the model about it, show the truth.

Examples::

    videollama3 demo                       # a new video, 4 questions, the bundled model
    videollama3 demo --seed 7 --image      # an image instead
    videollama3 demo --model runs/synthetic/stage4/final --out demo/   # another model; keep the video

Nothing is downloaded: the bundled model (``videollama3.synthetic.default_model_path()``) answers unless
``--model`` names another checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Demo worlds use seeds of their own, away from training (0, 1, ...) and benchmark seeds.
DEMO_SEED_OFFSET = 2_000_003


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint folder (default: the small model bundled with the package)")
    parser.add_argument("--seed", type=int, help="which synthetic item to render (default: a new one each run)")
    parser.add_argument("--image", action="store_true", help="an image instead of a video")
    parser.add_argument("--questions", type=int, default=4, help="questions to ask (default 4)")
    parser.add_argument("--out", type=Path, help="folder to keep the rendered media in (default: a temporary one)")


def run(args: argparse.Namespace) -> int:
    import secrets
    import tempfile

    from ..errors import ConfigError

    if args.questions < 1:
        raise ConfigError(f"--questions must be >= 1, got {args.questions}")
    from ..evaluation.base import EvalSettings, image_item, text_item, user_turn, video_item
    from ..evaluation.predictors import ModelPredictor, Request
    from ..synthetic import render, tasks, world
    from .options import model_or_bundled

    model = model_or_bundled(args.model)
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    world_seed = DEMO_SEED_OFFSET + seed
    settings = EvalSettings(max_new_tokens=32)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rng = tasks.qa_rng(world_seed, 0, 30)
        if args.image:
            scene = world.sample_image_scene(world_seed, 0)
            path = folder / f"synthetic-image-{seed}.png"
            render.render_image(scene).save(path)
            caption = tasks.image_caption(scene)
            questions = tasks.select_questions(tasks.image_questions(scene, rng), rng, args.questions)
            item = image_item(str(path))
        else:
            scene = world.sample_video_scene(world_seed, 0)
            path = folder / f"synthetic-video-{seed}.mp4"
            render.write_video(render.render_video(scene), path, scene.fps)
            caption = tasks.video_caption(scene)
            questions = tasks.select_questions(tasks.video_questions(scene, rng), rng, args.questions)
            item = video_item(str(path), settings)

        print(f"model:  {model}")
        print(
            f"{'image' if args.image else 'video'}:  {path if args.out else path.name + ' (temporary; --out keeps it)'}"
        )
        print(f"truth:  {caption}")
        predictor = ModelPredictor(model, settings, device="cpu")
        requests = [
            Request(f"q{k}", user_turn(item, text_item(qa.prompt)), settings.max_new_tokens)
            for k, qa in enumerate(questions)
        ]
        answers = predictor.generate(requests)
        n_right = 0
        for qa, answer in zip(questions, answers):
            right = tasks.score(qa, answer)
            n_right += right
            print()
            print("Q: " + qa.prompt.replace("\n", "\n   "))
            print(f"model: {answer!r}   truth: {qa.answer!r}   {'correct' if right else 'WRONG'}  [{qa.task}]")
        print(f"\n{n_right}/{len(questions)} correct (answered by {Path(model).name or model})")
    return 0
