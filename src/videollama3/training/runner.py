"""Run a recipe: its stages back to back, each from the previous stage's output.

A stage whose final model already exists is skipped (so re-running a recipe after a failure in stage 3
resumes stage 3 from its latest checkpoint), unless ``overwrite`` is set: the stage then starts afresh
(its old final model and checkpoints are deleted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..distributed import DistEnv, barrier, destroy_distributed, init_distributed
from ..errors import ConfigError
from .recipe import InitConfig, Recipe
from .trainer import StageResult, StageTrainer, StepCallback


def prepare_world(recipe: Recipe, env: DistEnv) -> None:
    """Write the synthetic world of a recipe with ``world`` (its data and what training starts from), once.

    The main rank writes what is missing; a tiny world is written again whole when a part is missing. Data or
    an initial model of the full world that another generator or other settings wrote stops the run (on every
    rank), with the reason: it is never silently reused, nor deleted.
    """
    world = recipe.world
    data, init = Path(world.data_dir), Path(world.init_dir)
    if world.size == "tiny":
        from ..synthetic.tiny import write_tiny_world

        if env.is_main and not all(p.is_dir() for p in (data, init / "llm", init / "siglip")):
            print(f"writing the tiny synthetic world: base models to {init}, data to {data}", flush=True)
            write_tiny_world(data, init, num_samples=world.samples, seed=world.seed)
        barrier(env)
        return

    from ..synthetic.model import build_initial_model, build_initial_model_on_base, initial_model_mismatch
    from ..synthetic.writer import WorldSpec, dataset_mismatch, write_dataset

    spec = WorldSpec(
        seed=world.seed,
        images=world.images,
        videos=world.videos,
        texts=world.texts,
        questions_per_image=world.questions,
        questions_per_video=world.questions,
    )
    stale = dataset_mismatch(data, spec)
    if stale:
        # Its tokenizer, initial model and stages were built from that data too: none of it is reused or deleted.
        raise ConfigError(
            f"world.data_dir {data}: {stale}, so it and the model trained on it do not match this recipe. "
            f"Move or delete {recipe.output_dir} (or set output_dir elsewhere) and run the recipe again."
        )
    stale = initial_model_mismatch(
        init,
        seed=world.seed,
        perception_steps=world.perception_steps,
        perception_precision=world.perception_precision,
        base_llm=world.base_llm,
    )
    if stale:
        raise ConfigError(
            f"world.init_dir {init}: {stale}, so the stages trained from it do not match this recipe. "
            f"Move or delete {init} and the stages' outputs (or set output_dir elsewhere) and run the recipe again."
        )
    if env.is_main and not (data / "meta.json").is_file():
        print(f"rendering the synthetic world's training data to {data}", flush=True)
        write_dataset(data, spec)
    if env.is_main and not (init / "config.json").is_file():
        print(f"writing the model training starts from to {init}", flush=True)
        build = build_initial_model_on_base if world.base_llm else build_initial_model
        build(
            init,
            seed=world.seed,
            perception_steps=world.perception_steps,
            perception_precision=world.perception_precision,
        )
    barrier(env)


def export_final(recipe: Recipe, env: DistEnv) -> None:
    """Copy the last stage's final model to ``recipe.export_dir`` (replacing what is there), or with
    ``export_format: trained-part`` write only what training changed from the base LLM."""
    source, target = recipe.stage_output(recipe.stages[-1]), Path(recipe.export_dir)
    if env.is_main and source.is_dir() and recipe.export_format == "trained-part":
        from ..synthetic.bundle import write_trained_part

        rank = sum(stage.lora.r for stage in recipe.stages if stage.lora.enabled)
        write_trained_part(source, target, max_rank=rank)
        print(f"exported the trained part of {source} to {target}", flush=True)
    elif env.is_main and source.is_dir():
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        print(f"exported {source} to {target}", flush=True)
    barrier(env)


def resolve_init(recipe: Recipe, index: int, env: DistEnv) -> Path:
    """The checkpoint folder stage ``index`` starts from (assembling it from an LLM + encoder if needed)."""
    from ..hub import resolve_folder

    stage = recipe.stages[index]
    init: InitConfig = recipe.stage_init(index)
    if init.checkpoint is not None:
        path = Path(init.checkpoint)
        if index > 0 and stage.init is None and not path.is_dir():
            raise ConfigError(
                f"stage {stage.name} starts from {path}, the output of stage {recipe.stages[index - 1].name}, "
                "which does not exist yet: run that stage first"
            )
        return resolve_folder(init.checkpoint)
    if init.llm is None or init.vision_encoder is None:
        raise ConfigError(f"stage {stage.name}: init needs `checkpoint`, or both `llm` and `vision_encoder`")
    target = recipe.stage_dir(stage) / "init"
    if env.is_main and not target.is_dir():
        from .initialize import build_initial_checkpoint

        dtype = torch.bfloat16 if stage.train.precision == "bf16" else torch.float32
        print(f"[{stage.name}] assembling {target} from {init.llm} + {init.vision_encoder}", flush=True)
        build_initial_checkpoint(
            init.llm,
            init.vision_encoder,
            target,
            projector_type=init.projector_type,
            processor=init.processor,
            dtype=dtype,
            seed=recipe.seed,
        )
    barrier(env)
    return target


def run_recipe(
    recipe: Recipe,
    stages: list[str] | None = None,
    overwrite: bool = False,
    callbacks: list[StepCallback] | None = None,
) -> list[StageResult]:
    """Train the recipe's stages (all, or the named ones) in order; return what each stage did."""
    names = [s.name for s in recipe.stages]
    unknown = sorted(set(stages or []) - set(names))
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the recipe has {names}")
    env = init_distributed()
    results = []
    try:
        if recipe.world is not None:
            prepare_world(recipe, env)
        for index, stage in enumerate(recipe.stages):
            if stages and stage.name not in stages:
                continue
            output = recipe.stage_output(stage)
            if output.is_dir():
                if not overwrite:
                    if env.is_main:
                        print(
                            f"[{stage.name}] already trained ({output}); skipping (--overwrite to retrain)", flush=True
                        )
                    continue
                if env.is_main:  # a fresh start: neither the old model nor its checkpoints
                    shutil.rmtree(output)
                    shutil.rmtree(recipe.stage_dir(stage) / "checkpoints", ignore_errors=True)
                barrier(env)
            init = resolve_init(recipe, index, env)
            trainer = StageTrainer(stage, init, recipe.stage_dir(stage), recipe.seed, env, callbacks)
            results.append(trainer.train())
        if recipe.export_dir is not None and (not stages or recipe.stages[-1].name in stages):
            export_final(recipe, env)
    finally:
        destroy_distributed()
    return results
