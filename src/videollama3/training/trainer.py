"""One training stage: model setup, the optimisation loop, checkpoints and the final model.

Per optimizer step (one *global batch* of ``global_batch_size`` samples):

1. each rank takes its share of the step's samples (``SampleOrder``) from its DataLoader and drops the bad
   ones (counted, never replaced);
2. it packs them into micro-batches (``packing``), then all ranks agree on two numbers: the number of
   supervised tokens of the *global* batch ``N`` (sum) and the number of micro-batches (max; ranks with
   fewer run placeholder micro-batches so that FSDP's collectives line up);
3. every micro-batch's summed token loss is divided by ``N`` and back-propagated; gradients are summed
   over micro-batches and ranks, so the update is that of the mean loss over all supervised tokens of the
   global batch, whatever the split into micro-batches, ranks or packs (the official trainer averages per
   micro-batch, which weights a token of a short answer more than one of a long answer);
4. gradients are clipped to ``max_grad_norm`` (global norm over all shards), AdamW steps, the schedule
   advances.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..distributed import DistEnv, all_gather_object, all_reduce, barrier
from ..errors import ConfigError
from ..model.cpu_attention import use_in_llm
from .checkpointing import CheckpointManager, copy_processor_files, gather_full_state_dict, save_final_model
from .data import BadSample, RankSampler, Sample, SampleOrder, SkipLog, SupervisedDataset, make_loader, resolve_sources
from .distributed import shard_model
from .monitor import FlopsModel, MetricsLogger, peak_flops
from .objective import TokenLoss
from .optim import apply_trainability, build_optimizer, build_scheduler, current_lrs
from .packing import make_micro_batches, placeholder_batch
from .recipe import StageConfig

logger = logging.getLogger("videollama3.training")

StepCallback = Callable[[int, dict], None]


@dataclass
class StageResult:
    name: str
    output: Path
    losses: list[float] = field(default_factory=list)  # per optimizer step run in this call
    steps: int = 0
    skipped: SkipLog = field(default_factory=SkipLog)


class DataQualityError(ConfigError):
    """Too many samples of a run are unusable: a broken dataset, not a few bad files."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StageTrainer:
    """Train one stage.

    Args:
        stage: the stage's settings.
        init_checkpoint: the VideoLLaMA3 checkpoint it starts from (its processor files are used).
        stage_dir: where checkpoints, logs and the final model go (``final/``).
        seed: the run's seed (sample order, dropout).
        env: the process layout.
        callbacks: called as ``callback(step, metrics)`` after every optimizer step (1-based step).
    """

    def __init__(
        self,
        stage: StageConfig,
        init_checkpoint: str | os.PathLike,
        stage_dir: str | os.PathLike,
        seed: int,
        env: DistEnv,
        callbacks: list[StepCallback] | None = None,
    ):
        self.stage = stage
        self.init_checkpoint = Path(init_checkpoint)
        self.stage_dir = Path(stage_dir)
        self.seed = seed
        self.env = env
        self.callbacks = list(callbacks or [])
        t = stage.train
        if t.packing and t.micro_batch_tokens < stage.data.model_max_length:
            raise ConfigError(
                f"stage {stage.name}: train.micro_batch_tokens ({t.micro_batch_tokens}) must be at least "
                f"data.model_max_length ({stage.data.model_max_length}) so that every sample fits a micro-batch"
            )
        self.use_fsdp = t.fsdp == "on" or (t.fsdp == "auto" and env.distributed)
        if env.distributed and not self.use_fsdp:
            raise ConfigError("several processes need train.fsdp: auto or on")
        if self.use_fsdp and stage.lora.enabled and stage.lora.quantize is not None:
            raise ConfigError(
                "QLoRA (lora.quantize) runs in one process: FSDP does not shard bitsandbytes weights here"
            )
        self.bf16 = t.precision == "bf16"

    # ------------------------------------------------------------------ setup
    def _load_model(self) -> nn.Module:
        from ..model.modeling import VideoLLaMA3ForCausalLM
        from .lora import quantization_kwargs

        s = self.stage
        attn = s.train.attn_implementation
        if attn == "sdpa" and self.bf16 and self.env.device.type == "cpu":
            attn = use_in_llm()  # the bf16 CPU backward of SDPA is several times slower than fp32's
        kwargs = {"dtype": torch.float32, "attn_implementation": attn}
        if s.lora.enabled and s.lora.quantize is not None:  # QLoRA: quantized weights are placed while loading
            kwargs.update(quantization_kwargs(s.lora), device_map={"": self.env.device})
        model = VideoLLaMA3ForCausalLM.from_pretrained(self.init_checkpoint, **kwargs)
        # The saved config says whether the model expects pruned video tokens (on after stages 3 and 4).
        model.config.use_token_compression = s.data.use_token_compression
        model.config.use_cache = False
        if s.train.gradient_checkpointing:
            enable_activation_checkpointing(model)
        return model

    def setup(self) -> None:
        s, env = self.stage, self.env
        set_seed(self.seed)
        model = self._load_model()
        if s.lora.enabled:
            from .lora import apply_lora, lora_groups

            model = apply_lora(model, s.lora, s.train.gradient_checkpointing)
            groups = lora_groups(s.lora)
        else:
            groups = ()
        self.trainable = apply_trainability(model, s.optim.lr, groups)
        self.objective = TokenLoss(model, always_run_vision=self.use_fsdp)
        self.base = self.objective.base
        self.flops_model = FlopsModel.from_model(model, self.base)
        if self.use_fsdp:
            shard_model(self.objective, self.base, bf16=self.bf16)
        else:
            self.objective.to(env.device)
        self.model = self.objective.model
        self.optimizer = build_optimizer(self.model, s.optim)

        sources = resolve_sources(s.data)
        if not sources:
            raise ConfigError(f"stage {s.name}: data.sources is empty")
        self.dataset = SupervisedDataset(sources, self.init_checkpoint, s.data, seed=self.seed)
        self.pad_token_id = self.dataset.processor.tokenizer.pad_token_id or 0
        self.order = SampleOrder(self.dataset.sizes, [src.weight for src in sources], self.seed, s.train.epochs)
        self.total_steps = self.order.num_steps(s.train.global_batch_size)
        if s.train.max_steps is not None:
            self.total_steps = min(self.total_steps, s.train.max_steps)
        if self.total_steps == 0:
            raise ConfigError(f"stage {s.name}: no data (the annotation files hold no samples)")
        self.scheduler = build_scheduler(self.optimizer, s.optim, self.total_steps)
        self.checkpoints = CheckpointManager(self.stage_dir / "checkpoints", s.train.keep_last, env)
        self.skipped = SkipLog()
        self.start_step = 0
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        resume = self.stage.train.resume
        if resume is None:
            return
        path = self.checkpoints.latest() if resume == "auto" else Path(resume)
        if path is None:
            return
        state = self.checkpoints.load(path, self.model, self.optimizer, self.scheduler)
        self.start_step = int(state["step"])
        if self.env.is_main:  # the merged counts live on rank 0; other ranks count what they see from here
            self.skipped.load_state_dict(state.get("skipped", {}))
            logger.info("resumed stage %s from %s (step %d)", self.stage.name, path, self.start_step)

    # ------------------------------------------------------------------ loop
    def train(self) -> StageResult:
        self.setup()
        s, env, t = self.stage, self.env, self.stage.train
        result = StageResult(self.stage.name, self.stage_dir / "final")
        metrics = MetricsLogger(self.stage_dir / "logs", t.report_to, s.name, {"stage": s.name}, enabled=env.is_main)
        if env.is_main:
            _truncate_metrics(self.stage_dir / "logs" / "metrics.jsonl", self.start_step)
        sampler = RankSampler(
            self.order, t.global_batch_size, env.rank, env.world_size, self.start_step, self.total_steps
        )
        counts = sampler.counts()
        loader = iter(make_loader(self.dataset, sampler, s.data.num_workers, s.data.prefetch_factor))
        peak = peak_flops(env.device, t.peak_tflops)
        progress = _progress_bar(self.total_steps, self.start_step, s.name, enabled=env.is_main and t.progress_bar)
        self.objective.train()
        try:
            for step, n_items in zip(range(self.start_step, self.total_steps), counts):
                started = time.perf_counter()
                items = [next(loader) for _ in range(n_items)]
                stats = self.train_step(items)
                elapsed = time.perf_counter() - started
                stats["step_s"] = elapsed
                stats["tokens_per_s"] = stats["tokens"] / elapsed
                if peak:
                    stats["mfu"] = stats["flops"] / (elapsed * peak * env.world_size)
                stats.pop("flops")
                result.losses.append(stats["loss"])
                result.steps += 1
                if env.is_main and (step + 1) % t.log_steps == 0:
                    metrics.log(step + 1, stats)
                progress.update(1)
                progress.set_postfix_str(_postfix(stats), refresh=False)
                self._check_data_quality()
                if t.save_steps and (step + 1) % t.save_steps == 0 and step + 1 < self.total_steps:
                    self.checkpoints.save(step + 1, self.model, self.optimizer, self.scheduler, self._trainer_state())
                for callback in self.callbacks:
                    callback(step + 1, stats)
        finally:
            progress.close()
            metrics.close()
        result.skipped = self._gather_skips()
        self._save_final(result.output)
        if env.is_main:
            print(f"[{s.name}] {result.skipped.summary()}", flush=True)
            print(f"[{s.name}] final model: {result.output}", flush=True)
        return result

    def train_step(self, items: list[Sample | BadSample]) -> dict:
        """One optimizer step on this rank's share of a global batch (samples and bad samples).

        Returns the step's metrics, summed or averaged over all ranks (``loss`` is the global token mean).
        """
        s, env, t = self.stage, self.env, self.stage.train
        samples = [x for x in items if isinstance(x, Sample)]
        for bad in (x for x in items if isinstance(x, BadSample)):
            self.skipped.add(bad)
            logger.warning("skipping sample %s [%s]: %s", bad.where, bad.kind, bad.message)
        self.skipped.seen += len(items)
        self.skipped.truncated += sum(x.truncated for x in samples)
        micro = make_micro_batches(
            samples,
            packing=t.packing,
            budget=t.micro_batch_tokens,
            micro_batch_size=t.micro_batch_size,
            pad_token_id=self.pad_token_id,
        )
        local_targets = sum(mb.num_targets for mb in micro)
        (n_targets,) = all_reduce([local_targets], env, "sum")
        (n_micro,) = all_reduce([len(micro)], env, "max")
        micro += [placeholder_batch(self.pad_token_id) for _ in range(int(n_micro) - len(micro))]
        # bf16 in one process: autocast (fp32 master weights); under FSDP its mixed-precision policy does it.
        autocast = (
            torch.autocast(env.device.type, dtype=torch.bfloat16) if self.bf16 and not self.use_fsdp else nullcontext()
        )

        loss_sum = torch.zeros((), dtype=torch.float64)
        if n_targets > 0:
            for mb in micro:
                with autocast:
                    loss = self.objective(**mb.model_inputs(env.device))
                (loss / n_targets).backward()
                loss_sum += loss.detach().double().cpu()
            max_norm = s.optim.max_grad_norm if s.optim.max_grad_norm is not None else math.inf
            params = [p for p in self.model.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            self.optimizer.step()
        else:  # every sample of the global batch was unusable: nothing to learn from, keep the schedule
            grad_norm = 0.0
        lrs = current_lrs(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

        real = [mb for mb in micro if mb.num_samples]
        flops = self.flops_model.step_flops(
            sample_lengths=[n for mb in real for n in mb.sample_lengths],
            num_targets=sum(mb.num_targets for mb in real),
            patches_per_frame=[n for mb in real for n in mb.patches_per_frame],
            num_visual_tokens=sum(mb.num_visual_tokens for mb in real),
        )
        totals = all_reduce(
            [
                float(loss_sum),
                sum(mb.num_tokens for mb in real),
                sum(mb.num_slots for mb in real),
                len(real),
                len(samples),
                len(items) - len(samples),
                sum(x.truncated for x in samples),
                flops,
            ],
            env,
        )
        loss_total, tokens, slots, n_real_micro, n_samples, n_bad, n_truncated, flops = totals
        stats = {
            "loss": loss_total / n_targets if n_targets else float("nan"),
            "grad_norm": grad_norm,
            "samples": n_samples,
            "skipped": n_bad,
            "truncated": n_truncated,
            "targets": n_targets,
            "tokens": tokens,
            "micro_batches": n_real_micro,
            "padding_waste": (slots - tokens) / slots if slots else 0.0,
            "flops": flops,
        }
        if t.packing and n_real_micro:
            stats["pack_fill"] = tokens / (n_real_micro * t.micro_batch_tokens)
        stats.update({f"lr/{group}": lr for group, lr in lrs.items()})
        return stats

    # ------------------------------------------------------------------ bookkeeping
    def _check_data_quality(self) -> None:
        limit = self.stage.data.max_bad_fraction
        seen, bad = all_reduce([self.skipped.seen, self.skipped.skipped], self.env)
        # Judge on enough samples: 1 bad sample of the first 8 is not a broken dataset.
        if seen >= 100 and bad > limit * seen:
            raise DataQualityError(
                f"stage {self.stage.name}: {int(bad)} of {int(seen)} samples were unusable (more than "
                f"data.max_bad_fraction = {limit}); run `videollama3 data check` on the annotations.\n"
                + self._gather_skips().summary()
            )

    def _gather_skips(self) -> SkipLog:
        """All ranks' skip logs merged (on every rank)."""
        if not self.env.distributed:
            return self.skipped
        merged = SkipLog()
        for state in all_gather_object(self.skipped.state_dict(), self.env):
            part = SkipLog()
            part.load_state_dict(state)
            merged.merge(part)
        return merged

    def _trainer_state(self) -> dict:
        merged = self._gather_skips()
        return {"stage": self.stage.name, "total_steps": self.total_steps, "skipped": merged.state_dict()}

    def _save_final(self, output: Path) -> None:
        env, s = self.env, self.stage
        dtype = torch.bfloat16 if s.train.save_dtype == "bf16" else torch.float32
        if s.lora.enabled:
            from .checkpointing import atomic_directory
            from .lora import export_merged, save_adapter

            state = gather_full_state_dict(self.model, env)
            if env.is_main:
                adapter_dir = output.with_name("adapter") if s.lora.merge_on_save else output
                with atomic_directory(adapter_dir) as tmp:
                    save_adapter(self.model, state, tmp, str(self.init_checkpoint))
                    copy_processor_files(self.init_checkpoint, tmp)
                if s.lora.merge_on_save:
                    export_merged(adapter_dir, output, base=str(self.init_checkpoint), dtype=dtype)
        else:
            state = gather_full_state_dict(self.base, env)
            if env.is_main:
                save_final_model(self.base, state, output, self.init_checkpoint, dtype)
        barrier(env)


def _truncate_metrics(file: Path, step: int) -> None:
    """Drop metrics of steps after ``step`` (logged by a run that was interrupted before its next save)."""
    import json

    if not file.is_file():
        return
    kept = [line for line in file.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    file.write_text("".join(line + "\n" for line in kept))


def _progress_bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, disable=not enabled, dynamic_ncols=True, unit="step")


def _postfix(stats: dict) -> str:
    parts = [f"loss {stats['loss']:.4f}", f"{stats['tokens_per_s']:.0f} tok/s"]
    lrs = [f"{k.removeprefix('lr/')[:3]} {v:.1e}" for k, v in stats.items() if k.startswith("lr/")]
    parts.append("lr " + " ".join(lrs))
    if "mfu" in stats:
        parts.append(f"MFU {100 * stats['mfu']:.1f}%")
    if stats.get("skipped"):
        parts.append(f"skipped {int(stats['skipped'])}")
    return ", ".join(parts)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute activations in the backward pass: the LLM's decoder layers and the vision encoder's.

    transformers renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` (the old
    name warns); the oldest release we support has only the old one.
    """
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
    model.vision_encoder.gradient_checkpointing = True
