"""Does a synthetic checkpoint pick the right option when the answer is already in the conversation?
(research/experiments.md, "Two more attempts at the lookup").

For every multiple-choice question of the held-out benchmark the model is asked twice, greedily:

``alone``
    the question as the benchmark asks it (media, question, options);
``given``
    after a first turn in which the same question, without options, was answered with the right option's
    text (``What colour is the object?`` / ``green``). Picking the option then needs no perception at all,
    only the matching step: find the option that says what was just said, and name its letter.

If ``given`` is no better than ``alone``, the model has not learned the matching step itself.

    python research/synthetic_mc_given_answer.py src/videollama3/assets/synthetic-model
"""

from __future__ import annotations

import argparse
import json

import torch

from videollama3.evaluation.base import EvalSettings, media_items, text_item
from videollama3.synthetic import tasks
from videollama3.synthetic.benchmark import SyntheticBenchmark, ensure_benchmark


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
    benchmark, settings = SyntheticBenchmark(), EvalSettings()
    right: dict[str, list[bool]] = {}
    for sample in benchmark.load(ensure_benchmark(args.seed, args.n // 2, args.n - args.n // 2)):
        if not sample.options or not sample.media:
            continue
        qa = tasks.QA(sample.question, sample.answer, sample.category, list(sample.options))
        truth = qa.options[tasks.LETTERS.index(qa.answer)]
        conversations = {
            "alone": benchmark.build_conversation(sample, settings),  # as the benchmark asks it
            "given": [
                {"role": "user", "content": [*media_items(sample, settings), text_item(qa.question)]},
                {"role": "assistant", "content": [text_item(truth)]},
                {"role": "user", "content": [text_item(qa.prompt)]},
            ],
        }
        for mode, conversation in conversations.items():
            inputs = processor(
                conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt"
            )
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            reply = processor.batch_decode(output, skip_special_tokens=True)[0]
            right.setdefault(f"{sample.meta['modality']}/{mode}", []).append(tasks.score(qa, reply))
    result = {key: {"n": len(v), "accuracy": round(100.0 * sum(v) / len(v), 1)} for key, v in sorted(right.items())}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
