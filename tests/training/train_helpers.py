"""Helpers shared by the training tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
FIXTURE_MODEL = FIXTURES / "model"
FIXTURE_MEDIA = FIXTURES / "media"


def one_stage_recipe(output_dir, init, sources, data_folder, *, overrides=(), **stage):
    """A one-stage recipe on the tiny world: small batches, no worker processes, no logging backends.

    Args:
        sources: annotation files (paths), or ``SourceConfig``-like dicts.
        stage: stage fields merged over the defaults (e.g. ``optim={"lr": {...}}``).
    """
    from videollama3.training.recipe import recipe_from_dict

    defaults = {
        "data": {"data_folder": str(data_folder), "model_max_length": 512, "mm_max_length": 256, "num_workers": 0},
        "optim": {"lr": {"llm": 3e-3, "projector": 3e-3, "vision_encoder": 1e-3}, "warmup_ratio": 0.0},
        "train": {
            "global_batch_size": 4,
            "micro_batch_tokens": 512,
            "precision": "fp32",
            "gradient_checkpointing": False,
            "save_steps": 0,
            "save_dtype": "fp32",
            "report_to": [],
            "progress_bar": False,
        },
    }
    data = dict(stage.pop("data", {}))
    data["sources"] = [s if isinstance(s, dict) else {"path": str(s)} for s in sources]
    raw = {
        "name": "test",
        "output_dir": str(output_dir),
        "seed": 0,
        "init": {"checkpoint": str(init)},
        "defaults": defaults,
        "stages": [{"name": "stage", "data": data, **stage}],
    }
    return recipe_from_dict(raw, list(overrides))


def safetensors_weights(folder):
    """All tensors of a checkpoint folder (single file or shards)."""
    from videollama3.model.layouts import read_weights

    return read_weights(Path(folder))
