"""Does a synthetic checkpoint pick the right option when the answer is already in the conversation?
(docs/experiments.md, "Two more attempts at the lookup").

For every multiple-choice question of the held-out benchmark the model is asked twice, greedily:

``alone``
    the question as the benchmark asks it (media, question, options);
``given``
    after a first turn in which the same question, without options, was answered with the right option's
    text (``What colour is the object?`` / ``green``). Picking the option then needs no perception at all,
    only the matching step: find the option that says what was just said, and name its letter.

If ``given`` is no better than ``alone``, the model has not learned the matching step itself.

    python benchmarks/synthetic_mc_given_answer.py src/videollama3/assets/synthetic-model
"""

from __future__ import annotations

import argparse
import json

import torch

from videollama3.synthetic import tasks
from videollama3.synthetic.benchmark import ensure_benchmark
from videollama3.synthetic.writer import read_benchmark


def media_item(item, root) -> dict:
    path = str(root / item.media)
    if item.modality == "video":
        return {"type": "video", "video": {"video_path": path, "fps": 1, "max_frames": 16}}
    return {"type": "image", "image": {"image_path": path}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a synthetic checkpoint folder")
    parser.add_argument("--n", type=int, default=400, help="benchmark questions (half image, half video)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoProcessor

    import videollama3  # noqa: F401  (registers the Auto classes)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    root = ensure_benchmark(args.seed, args.n // 2, args.n - args.n // 2)
    right: dict[str, list[bool]] = {}
    for item in read_benchmark(root):
        qa = item.qa
        if not qa.options or item.media is None:
            continue
        truth = qa.options[tasks.LETTERS.index(qa.answer)]
        media = media_item(item, root)
        conversations = {
            "alone": [{"role": "user", "content": [media, {"type": "text", "text": qa.prompt}]}],
            "given": [
                {"role": "user", "content": [media, {"type": "text", "text": qa.question}]},
                {"role": "assistant", "content": [{"type": "text", "text": truth}]},
                {"role": "user", "content": [{"type": "text", "text": qa.prompt}]},
            ],
        }
        for mode, conversation in conversations.items():
            inputs = processor(
                conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt"
            )
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            reply = processor.batch_decode(output, skip_special_tokens=True)[0]
            right.setdefault(f"{item.modality}/{mode}", []).append(tasks.score(qa, reply))
    result = {key: {"n": len(v), "accuracy": round(100.0 * sum(v) / len(v), 1)} for key, v in sorted(right.items())}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
