"""The training data pipeline: annotation files -> processed samples, in a deterministic order.

- :class:`SupervisedDataset` maps a global sample index to a :class:`Sample` (ids, labels, pixels) or a
  :class:`BadSample` (why it cannot be used). Everything is lazy: records, media and tokenization are read
  when a sample is requested, in DataLoader worker processes.
- :class:`SampleOrder` is the order in which samples are consumed: per epoch, a seeded permutation of the
  weighted mixture of annotation files. Step ``s`` consumes positions ``[s * G, (s + 1) * G)`` of it and
  rank ``r`` of ``W`` takes every ``W``-th of those, so the order depends only on the seed, resuming at
  step ``s`` needs nothing but ``s``, and any number of ranks sees the same global batches.

Bad samples are never replaced by other samples (the official loader silently substitutes a random one):
they are returned as :class:`BadSample`, skipped by the trainer and counted.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConversationError, MediaError, MediaNotFoundError
from .annotations import AnnotationFile, MediaSettings, SampleError, check_media_exists, record_to_conversation
from .labels import IGNORE_INDEX, ChatTokens, fit_length, supervised_labels
from .recipe import DataConfig
from .streaming import build_stream_sample, is_stream_record, sampling_generator


@dataclass
class Sample:
    """One processed training sample (a single conversation)."""

    index: int  # global dataset index
    where: str  # file:line, for messages
    input_ids: torch.Tensor  # (L,) int64, one <image> id per kept visual token
    labels: torch.Tensor  # (L,) int64, -100 where not supervised (not shifted)
    pixel_values: torch.Tensor | None = None  # (N, 588) patch rows of all its images / frames
    grid_sizes: torch.Tensor | None = None  # (n_items, 3)
    merge_sizes: torch.Tensor | None = None  # (n_items,)
    compression_mask: torch.Tensor | None = None  # (M,) bool over all merged visual tokens
    truncated: bool = False

    @property
    def length(self) -> int:
        return self.input_ids.numel()

    @property
    def num_targets(self) -> int:
        """Supervised next-token predictions (the first token is never a target)."""
        return int((self.labels[1:] != IGNORE_INDEX).sum())

    @property
    def num_patches(self) -> int:
        return 0 if self.pixel_values is None else self.pixel_values.shape[0]


@dataclass
class BadSample:
    index: int
    where: str
    kind: str  # see SampleError
    message: str


@dataclass
class SkipLog:
    """Counts of skipped samples per kind, with the first few examples of each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    seen: int = 0
    truncated: int = 0  # used, with text cut at model_max_length
    keep_examples: int = 5

    def add(self, bad: BadSample) -> None:
        self.counts[bad.kind] = self.counts.get(bad.kind, 0) + 1
        shown = self.examples.setdefault(bad.kind, [])
        if len(shown) < self.keep_examples:
            shown.append(f"{bad.where}: {bad.message}")

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipLog) -> None:
        self.seen += other.seen
        self.truncated += other.truncated
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
            shown = self.examples.setdefault(kind, [])
            shown.extend(other.examples.get(kind, [])[: max(0, self.keep_examples - len(shown))])

    def summary(self) -> str:
        cut = f"; {self.truncated} truncated to model_max_length" if self.truncated else ""
        if not self.counts:
            return f"all {self.seen} samples used{cut}"
        lines = [f"skipped {self.skipped} of {self.seen} samples{cut}:"]
        for kind, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {kind}: {n}")
            lines.extend(f"    {example}" for example in self.examples.get(kind, []))
        return "\n".join(lines)

    def state_dict(self) -> dict:
        return {
            "counts": dict(self.counts),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "seen": self.seen,
            "truncated": self.truncated,
        }

    def load_state_dict(self, state: dict) -> None:
        self.counts = dict(state.get("counts", {}))
        self.examples = {k: list(v) for k, v in state.get("examples", {}).items()}
        self.seen = int(state.get("seen", 0))
        self.truncated = int(state.get("truncated", 0))


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """An annotation file and the folder its media paths are relative to."""

    path: Path
    data_folder: Path | None
    weight: float
    name: str


def resolve_sources(config: DataConfig) -> list[Source]:
    sources = []
    for s in config.sources:
        path = Path(os.path.expanduser(s.path))
        folder = s.data_folder or config.data_folder
        sources.append(
            Source(
                path=path,
                data_folder=Path(os.path.expanduser(folder)) if folder else path.parent,
                weight=float(s.weight),
                name=s.name or path.name,
            )
        )
    return sources


class SupervisedDataset(Dataset):
    """Global index -> :class:`Sample` or :class:`BadSample`.

    The processor is loaded lazily from ``processor_dir`` in whichever process first needs it (each
    DataLoader worker loads its own), so the dataset itself is small and picklable.

    Args:
        sources: annotation files (indices run through them in order).
        processor_dir: a checkpoint folder with the tokenizer and processor files.
        config: the stage's data settings (visual budget, merge sizes, pruning, lengths).
        seed: seeds the negative sampling of streaming records (with the sample index).
    """

    def __init__(self, sources: list[Source], processor_dir: str | os.PathLike, config: DataConfig, seed: int = 0):
        self.sources = sources
        self.seed = seed
        self.files = [AnnotationFile(s.path) for s in sources]
        self.sizes = [len(f) for f in self.files]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.processor_dir = str(processor_dir)
        self.config = config
        self._processor = None
        self._chat_tokens: ChatTokens | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def processor(self):
        if self._processor is None:
            from ..processing import VideoLLaMA3Processor

            c = self.config
            self._processor = VideoLLaMA3Processor.from_pretrained(
                self.processor_dir,
                fps=c.fps,
                max_frames=c.max_frames,
                image_merge_size=c.image_merge_size,
                video_merge_size=c.video_merge_size,
                use_token_compression=c.use_token_compression,
            )
            self._chat_tokens = ChatTokens.from_tokenizer(self._processor.tokenizer, self._processor.image_token)
        return self._processor

    def locate(self, index: int) -> tuple[int, int]:
        """Global index -> (source, row)."""
        source = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return source, index - int(self.offsets[source])

    def where(self, index: int) -> str:
        source, row = self.locate(index)
        return self.files[source].where(row)

    def __getitem__(self, index: int) -> Sample | BadSample:
        try:
            return self.load(index)
        except SampleError as exc:
            return BadSample(index, self.where(index), exc.kind, str(exc))
        except MediaNotFoundError as exc:
            return BadSample(index, self.where(index), "missing_media", str(exc))
        except MediaError as exc:
            return BadSample(index, self.where(index), "corrupt_media", str(exc))
        except ConversationError as exc:
            return BadSample(index, self.where(index), "format", str(exc))
        except Exception as exc:  # a decoder error we do not know by type: still this sample's fault, not the run's
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return BadSample(index, self.where(index), "error", detail)

    def load(self, index: int) -> Sample:
        """Process one sample, raising :class:`SampleError` (or a processor error) when it is unusable."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        c = self.config
        source, row = self.locate(index)
        record = self.files[source][row]
        folder = self.sources[source].data_folder
        if is_stream_record(record):
            input_ids, labels, visual = self._load_stream(record, folder, index)
        else:
            input_ids, labels, visual = self._load_conversation(record, folder)
        if not (labels != IGNORE_INDEX).any():
            raise SampleError("no_answer", "no supervised token: nothing to train on")
        fitted = fit_length(input_ids, labels, c.model_max_length, self._chat_tokens.image)
        sample = Sample(
            index, self.files[source].where(row), fitted.input_ids, fitted.labels, truncated=fitted.truncated
        )
        if "pixel_values" in visual:
            sample.pixel_values = visual["pixel_values"]
            sample.grid_sizes = visual["grid_sizes"]
            sample.merge_sizes = visual["merge_sizes"]
            sample.compression_mask = visual["compression_mask"]
        return sample

    def _load_conversation(self, record: dict, folder: Path | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """An ordinary record: (ids (L,), labels (L,), the processor's visual outputs)."""
        c = self.config
        conversation = record_to_conversation(record, folder, MediaSettings(c.fps, c.max_frames))
        check_media_exists(record, folder)
        out = self.processor(
            conversation=conversation,
            add_system_prompt=c.add_system_prompt,
            add_generation_prompt=False,
            return_tensors="pt",
            max_tokens=c.mm_max_length,
        )
        input_ids = out["input_ids"][0]
        return input_ids, supervised_labels(input_ids, self._chat_tokens), out

    def _load_stream(self, record: dict, folder: Path | None, index: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """A streaming record (:mod:`.streaming`): frames interleaved with timed messages."""
        c = self.config
        check_media_exists(record, folder)
        built = build_stream_sample(
            record,
            folder,
            self.processor,
            self._chat_tokens,
            fps=c.fps,
            max_frames=c.max_frames,
            max_tokens=c.mm_max_length,
            prune=c.use_token_compression,
            add_system_prompt=c.add_system_prompt,
            generator=sampling_generator(self.seed, index),
            turn_labels=c.stream_turn_labels,
        )
        return built.input_ids, built.labels, built.visual


# --------------------------------------------------------------------------------------------------
# Order
# --------------------------------------------------------------------------------------------------


class SampleOrder:
    """The global, seeded order of samples over all epochs.

    Each epoch holds, for every source of size ``n`` and weight ``w``, ``floor(w)`` copies of all its rows
    plus a random ``round((w - floor(w)) * n)`` of them (drawn anew each epoch), shuffled together.

    Args:
        sizes: rows per source.
        weights: sampling weight per source.
        seed: the run's seed.
        epochs: how many epochs to run (may be fractional).
    """

    def __init__(self, sizes: list[int], weights: list[float], seed: int, epochs: float):
        if len(sizes) != len(weights):
            raise ValueError("one weight per source")
        if any(w < 0 for w in weights):
            raise ValueError(f"sampling weights must be >= 0, got {weights}")
        self.sizes, self.weights, self.seed = list(sizes), list(weights), seed
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.epoch_size = sum(math.floor(w) * n + round((w - math.floor(w)) * n) for n, w in zip(sizes, weights))
        self.total = math.floor(epochs * self.epoch_size)
        self._cache: tuple[int, np.ndarray] | None = None

    def epoch(self, e: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == e:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, e])
        parts = []
        for offset, n, w in zip(self.offsets, self.sizes, self.weights):
            full = math.floor(w)
            parts.extend([np.arange(n) + offset] * full)
            extra = round((w - full) * n)
            if extra:
                parts.append(np.sort(rng.choice(n, size=extra, replace=False)) + offset)
        order = rng.permutation(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        self._cache = (e, order)
        return order

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, position: int) -> int:
        if not 0 <= position < self.total:
            raise IndexError(position)
        epoch, within = divmod(position, self.epoch_size)
        return int(self.epoch(epoch)[within])

    def num_steps(self, global_batch_size: int) -> int:
        return math.ceil(self.total / global_batch_size)

    def step_positions(self, step: int, global_batch_size: int, rank: int = 0, world_size: int = 1) -> range:
        """Positions in the order that ``rank`` processes at optimizer step ``step``."""
        start = step * global_batch_size
        stop = min(start + global_batch_size, self.total)
        return range(start + rank, stop, world_size)


class RankSampler(Sampler[int]):
    """Dataset indices of one rank, step after step, from ``start_step`` (resuming skips nothing else)."""

    def __init__(
        self, order: SampleOrder, global_batch_size: int, rank: int, world_size: int, start_step: int, num_steps: int
    ):
        self.order, self.batch = order, global_batch_size
        self.rank, self.world = rank, world_size
        self.start, self.stop = start_step, num_steps

    def counts(self) -> list[int]:
        return [
            len(self.order.step_positions(s, self.batch, self.rank, self.world)) for s in range(self.start, self.stop)
        ]

    def __iter__(self):
        for step in range(self.start, self.stop):
            for position in self.order.step_positions(step, self.batch, self.rank, self.world):
                yield self.order[position]

    def __len__(self) -> int:
        return sum(self.counts())


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    # Each worker decodes one sample at a time; intra-op, decoding and resizing threads would only fight the
    # other workers and the training process (a 16-frame video sample: 13 ms in one thread, 18 ms with two
    # per core on 2 cores).
    torch.set_num_threads(1)
    os.environ.setdefault("VIDEOLLAMA3_DECODE_WORKERS", "1")
    os.environ.setdefault("VIDEOLLAMA3_RESIZE_THREADS", "1")


def make_loader(dataset: SupervisedDataset, sampler: RankSampler, num_workers: int, prefetch_factor: int) -> DataLoader:
    """A DataLoader yielding one :class:`Sample` / :class:`BadSample` at a time, in the sampler's order."""
    kwargs = {}
    if num_workers > 0:
        # Workers tokenize one sample at a time: no tokenizer thread pool in them beside the trainer's threads.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        kwargs = {
            "prefetch_factor": prefetch_factor,
            "persistent_workers": False,
            "worker_init_fn": _worker_init,
            # Workers start from a fresh interpreter, not from a fork of the trainer: a forked worker keeps the
            # pages of the trainer's memory that the trainer then rewrites (a second copy of it: 12 GB in the
            # synthetic recipe's fourth stage, after three stages in one process).
            "multiprocessing_context": "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn",
        }
    return DataLoader(
        dataset, sampler=sampler, batch_size=None, collate_fn=_identity, num_workers=num_workers, **kwargs
    )
