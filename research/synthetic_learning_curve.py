"""Learning curve of a synthetic run: held-out accuracy at every saved checkpoint of its stages.

Each intermediate checkpoint (``STAGE/checkpoints/step-N``, the trainer's resumable state) is turned into
a model folder (its weights put into the stage's final model, which has the same architecture and the
processor files) and evaluated on the held-out synthetic benchmark, as is each stage's ``final``. Rows
(stage, step, image, video, open / multiple-choice accuracy per modality, accuracy per task) are appended
to ``--jsonl`` as they come, and rows already there are skipped, so an interrupted run continues.

The recipe keeps only the last checkpoint of a stage; train with more kept to get a curve::

    videollama3 train synthetic --set output_dir=runs/curve --set export_dir=null \\
        --set train.save_steps=50 --set train.keep_last=100
    python research/synthetic_learning_curve.py runs/curve --stages stage3,stage4 --every 100 \\
        --jsonl runs/curve.jsonl

Results and their reading: research/experiments.md ("Learning curves").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path


def checkpoint_model(checkpoint: Path, final: Path, folder: Path) -> Path:
    """Write the model of trainer checkpoint ``checkpoint`` as a model folder ``folder``."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

    from videollama3 import VideoLLaMA3ForCausalLM
    from videollama3.training.checkpointing import save_final_model

    model = VideoLLaMA3ForCausalLM.from_pretrained(str(final), dtype=torch.float32)
    options = StateDictOptions(ignore_frozen_params=True)  # as the trainer saved it
    state = {"model": get_model_state_dict(model, options=options)}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(checkpoint / "state"))
    set_model_state_dict(model, state["model"], options=options)
    return save_final_model(model, model.state_dict(), folder, final, torch.float32)


def final_step(stage_dir: Path) -> int:
    """The last step of a finished stage (its metrics' last row)."""
    lines = (stage_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return int(json.loads(lines[-1])["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the recipe's output_dir")
    parser.add_argument("--stages", required=True, help="comma-separated stage names, in order")
    parser.add_argument("--every", type=int, default=1, help="only checkpoints whose step is a multiple of this")
    parser.add_argument("--n", type=int, default=400, help="held-out questions (half image, half video)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument("--jsonl", type=Path, required=True, help="append one row per checkpoint here")
    args = parser.parse_args()

    from videollama3.synthetic import evaluate
    from videollama3.training.checkpointing import STEP_DIR

    done = set()
    if args.jsonl.is_file():
        done = {(r["stage"], r["step"]) for r in map(json.loads, args.jsonl.read_text().splitlines())}
    for stage in args.stages.split(","):
        stage_dir = args.run / stage
        final = stage_dir / "final"
        if not (final / "config.json").is_file():
            parser.error(f"{final}: no final model (the stage has not finished)")
        saved = [(int(m[1]), c) for c in (stage_dir / "checkpoints").glob("step-*") if (m := STEP_DIR.match(c.name))]
        points = [(step, c) for step, c in saved if step % args.every == 0]
        points.append((final_step(stage_dir), None))
        for step, checkpoint in sorted(dict(points).items()):
            if (stage, step) in done:
                continue
            with tempfile.TemporaryDirectory() as scratch:
                model_dir = final if checkpoint is None else checkpoint_model(checkpoint, final, Path(scratch) / "m")
                metrics = evaluate(model_dir, n=args.n, seed=args.seed)
            scores = {
                "image": metrics["image"],
                "video": metrics["video"],
                **metrics["per_kind"],
                **metrics["per_task"],
            }
            row = {"stage": stage, "step": step, **{k: round(v, 1) for k, v in scores.items()}}
            print(json.dumps(row), flush=True)
            with args.jsonl.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
