"""The synthetic world told in words: can the small LLM answer the world's questions when the scene is
written in the prompt instead of shown? (research/experiments.md, "Two more attempts at the lookup").

``write`` renders text-only conversations in the official annotation format: a scene's caption stands where
the picture would be (``There is a large red circle in the center.\\nWhat colour is the object?``), followed
by 1-8 of the scene's questions; even records are images, odd ones videos. Scenes are numbered far from the
rendered training items. ``eval`` asks a checkpoint one held-out question per conversation and prints the
accuracy per modality, kind (open / mc) and task.

    python research/synthetic_text_scenes.py write runs/synthetic/data/scene_text.jsonl --records 20000
    videollama3 train RECIPE --stages language   # a recipe with the docs' `language` stage (LLM only)
    python research/synthetic_text_scenes.py eval runs/exp_language/language/final

``--mc-last`` keeps at most one multiple-choice question per conversation, as its last.
"""

from __future__ import annotations

import argparse
import collections
import json

from synthetic_llm_probes import scene_in_words  # this folder, on sys.path when run as a script

from videollama3.synthetic import tasks
from videollama3.synthetic.writer import WorldSpec, _conversation, _system_turn

SCENE_OFFSET = 1_000_000  # far from the rendered items (0 ...)
HELD_OUT_OFFSET = 1_500_000


def write(path: str, records: int, mc_last: bool, seed: int = 0) -> None:
    spec = WorldSpec(seed=seed)
    with open(path, "w") as f:
        for i in range(records):
            rng = tasks.qa_rng(seed, i, 13)
            _, caption, pool = scene_in_words(seed, i % 2 == 0, SCENE_OFFSET + i // 2, rng)
            qas = tasks.select_questions(pool, rng, int(rng.integers(1, 9)))
            if mc_last:
                qas = [q for q in qas if not q.options] + [q for q in qas if q.options][:1]
            turns = [(q.prompt, q.answer) for q in qas]
            conversation = _conversation(caption, turns, _system_turn(rng, spec.system_ratio))
            f.write(json.dumps({"conversations": conversation, "tasks": [q.task for q in qas]}) + "\n")


def evaluate(checkpoint: str, n: int, batch: int = 32) -> dict[str, float]:
    import torch
    from transformers import AutoProcessor

    import videollama3  # noqa: F401 - registers the Auto classes
    from videollama3 import VideoLLaMA3ForCausalLM

    model = VideoLLaMA3ForCausalLM.from_pretrained(checkpoint).eval()
    processor = AutoProcessor.from_pretrained(checkpoint)
    items = []
    for i in range(n):
        rng = tasks.qa_rng(777, i, 99)
        modality, caption, pool = scene_in_words(0, i % 2 == 0, HELD_OUT_OFFSET + i, rng)
        (qa,) = tasks.select_questions(pool, rng, 1)
        items.append((modality, caption + "\n" + qa.prompt, qa))
    counts = collections.defaultdict(lambda: [0, 0])
    for start in range(0, n, batch):
        chunk = items[start : start + batch]
        conversations = [[{"role": "user", "content": [{"type": "text", "text": text}]}] for _, text, _ in chunk]
        inputs = processor(
            conversation=conversations, add_system_prompt=False, add_generation_prompt=True, return_tensors="pt"
        )
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        for (modality, _, qa), text in zip(chunk, processor.batch_decode(out, skip_special_tokens=True)):
            right = tasks.score(qa, text)
            for key in (modality, f"{modality}/{qa.kind}", f"{modality}/{qa.task}"):
                counts[key][0] += right
                counts[key][1] += 1
    return {k: round(100 * r / t, 1) for k, (r, t) in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("path")
    w.add_argument("--records", type=int, default=20000)
    w.add_argument("--mc-last", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("checkpoint")
    e.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    if args.command == "write":
        write(args.path, args.records, args.mc_last)
    else:
        print(json.dumps(evaluate(args.checkpoint, args.n)))


if __name__ == "__main__":
    main()
