"""The benchmark interface: samples, predictions, settings and the ``Benchmark`` base class.

A benchmark is a small class with three methods (see :class:`Benchmark`):

- ``load(data_root) -> list[Sample]`` reads the dataset in its published on-disk layout;
- ``build_conversation(sample, settings)`` turns one sample into the conversation the processor takes,
  with the official prompt;
- ``score(predictions) -> dict`` turns the model's responses into the benchmark's metrics.

Everything else (batching, data parallelism, resuming, writing results) is the runner's job, so a new
benchmark is a new subclass registered with :func:`videollama3.evaluation.registry.register_benchmark`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VideoLLaMA3Error

# The official VideoLLaMA3 evaluation settings (evaluation/evaluate.py of the release and the paper).
DEFAULT_FPS = 1
DEFAULT_MAX_FRAMES = 180
DEFAULT_MAX_VISUAL_TOKENS = 16384
DEFAULT_MAX_NEW_TOKENS = 2048

Conversation = list[dict[str, Any]]


class EvaluationError(VideoLLaMA3Error, ValueError):
    """A benchmark cannot be evaluated as asked (missing files, malformed annotations, bad options...)."""


class DatasetError(EvaluationError):
    """A dataset folder does not hold the files of the benchmark's published layout."""


@dataclass(frozen=True)
class DataProblem:
    """Something wrong in a dataset copy that a reader worked around instead of failing the run.

    Readers never drop data silently: an empty question file, a missing image, an answer that is not
    among the options... is reported with :meth:`Benchmark.report`. The runner writes the problems into
    the results (``scores.json``: ``data_problems``) and the summary, and ``--strict`` makes any of them
    an error.

    Attributes:
        kind: a short machine name: ``"empty_file"``, ``"missing_media"``, ``"answer_not_in_options"``,
            ``"question_count_shortfall"``, ``"malformed_record"``...
        detail: a human sentence naming the file / sample id and the reason.
    """

    kind: str
    detail: str


@dataclass(frozen=True)
class EvalSettings:
    """How the model is run. Defaults are the official VideoLLaMA3 evaluation settings.

    Attributes:
        fps: video frames sampled per second.
        max_frames: at most this many frames per video (uniformly subsampled beyond).
        max_visual_tokens: visual-token budget of one sample (the processor's ``max_tokens``).
        max_new_tokens: generation length limit (generation is greedy).
        batch_size: samples per ``generate`` call (the official code runs 1).
    """

    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_visual_tokens: int = DEFAULT_MAX_VISUAL_TOKENS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise EvaluationError(f"fps must be a positive number, got {self.fps!r}")
        for name in ("max_frames", "max_visual_tokens", "max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EvaluationError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> EvalSettings:
        return dataclasses.replace(self, **changes)


@dataclass
class Sample:
    """One question of a benchmark.

    Attributes:
        id: unique and stable within the benchmark (predictions are resumed and merged by it).
        question: the question as the dataset states it (prompts are built from it).
        answer: the ground truth, in the form the benchmark's ``score`` expects (a letter for
            multiple-choice questions, a list of strings for VQA, an interval for grounding...).
        options: the answer options of a multiple-choice question, in order (letters A, B, ...).
        category: the task / question type the sample is reported under.
        media: what the model looks at: ``{"type": "image", ...}`` / ``{"type": "video", ...}`` items
            (see :func:`image_item` and :func:`video_item`), in prompt order.
        meta: everything else a benchmark keeps (subtitle paths, durations, official ids...).
    """

    id: str
    question: str = ""
    answer: Any = None
    options: list[str] = field(default_factory=list)
    category: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """The model's answer to one sample, and what scoring made of it.

    ``response`` is None when the sample failed (``error`` says why: media that cannot be read, an
    exception in the model...). Scoring fills ``extracted`` (the parsed answer; None when the response
    could not be parsed) and ``correct`` / ``score``; failed and unparseable samples count as wrong,
    they are never replaced by a guess.
    """

    sample: Sample
    response: str | None
    error: str | None = None
    extracted: Any = None
    correct: bool | None = None
    score: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.sample.id

    @property
    def failed(self) -> bool:
        return self.response is None


class Benchmark(ABC):
    """Base class of every benchmark.

    Subclasses set the class attributes and implement :meth:`load`, :meth:`build_conversation` and
    :meth:`score`. Registered variants of one class receive their options as keyword arguments
    (e.g. ``VideoMME(subtitles="with")``).

    Class attributes:
        modality: ``"image"`` or ``"video"`` (documentation and the summary table).
        primary_metric: the key of :meth:`score`'s result shown in the summary table.
        requires_judge: scoring calls an LLM judge (the runner refuses to run it without one).
        folder: the folder name the dataset usually has (used with a shared ``--data-root``).
    """

    modality: str = "image"
    primary_metric: str = "accuracy"
    requires_judge: bool = False
    folder: str = ""

    def __init__(self, name: str | None = None, **options: Any) -> None:
        self.name = name or type(self).__name__.lower()
        self.options = options
        self.judge: Any = None  # set by the runner for benchmarks that require one
        self.problems: list[DataProblem] = []  # what load() found wrong in the data (the runner clears it)

    def report(self, kind: str, detail: str) -> None:
        """Record a data problem (see :class:`DataProblem`); the reader goes on without the bad part."""
        self.problems.append(DataProblem(kind, detail))

    def check_count(self, loaded: int, published: int, what: str) -> None:
        """Report ``question_count_shortfall`` when fewer than the published number of questions loaded.

        The rule: call this only where the files read are meant to hold the whole published set (no
        subset or variant option of the reader narrowed it; ``--limit`` is applied by the runner after
        loading, so it does not count). A copy that loads fewer questions than the benchmark publishes
        is then incomplete or damaged, and its scores are not comparable with published ones. More
        questions than published are not reported (a later release may add some).

        Args:
            loaded: questions this reader loaded.
            published: the number the benchmark publishes for the full set.
            what: the set and file(s), for the message (e.g. ``"OCRBench.json"``).
        """
        if loaded < published:
            self.report(
                "question_count_shortfall",
                f"{what}: {loaded} questions loaded, {published} published ({published - loaded} missing)",
            )

    def check_media(self, path: str | Path, sample_id: str) -> bool:
        """Whether the media file ``path`` of ``sample_id`` exists; reports ``missing_media`` when not.

        The sample is kept either way: a missing file fails that sample at inference time (recorded as a
        failed prediction, scored as wrong), never the whole load.
        """
        if Path(path).exists():
            return True
        self.report("missing_media", f"{sample_id}: {path} does not exist")
        return False

    @abstractmethod
    def load(self, data_root: str | Path) -> list[Sample]:
        """Read the dataset in its published layout under ``data_root``, in a deterministic order."""

    @abstractmethod
    def build_conversation(self, sample: Sample, settings: EvalSettings) -> Conversation:
        """The conversation (processor format) asking the model ``sample``, with the official prompt."""

    @abstractmethod
    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        """Metrics of ``predictions`` (one per loaded sample, in load order).

        Implementations fill ``extracted`` / ``correct`` / ``score`` of each prediction and return a
        dict with at least :attr:`primary_metric`, ``"n"``, ``"failed"`` and (when answers are parsed)
        ``"unparseable"``. Percentages are in [0, 100], as benchmark papers report them.
        """

    def max_new_tokens(self, sample: Sample, settings: EvalSettings) -> int:
        """Generation limit for ``sample`` (the settings' unless a prompt demands otherwise)."""
        return settings.max_new_tokens

    def write_submission(self, predictions: list[Prediction], folder: Path) -> Path | None:
        """Write a file for an evaluation server (test splits without public answers); None if none."""
        return None


# --------------------------------------------------------------------------------------------------
# Conversation items
# --------------------------------------------------------------------------------------------------


def image_item(image: Any) -> dict[str, Any]:
    """A processor content item for an image: a path (str / Path) or a PIL image."""
    if isinstance(image, (str, Path)):
        return {"type": "image", "image": {"image_path": str(image)}}
    return {"type": "image", "image": image}


def video_item(
    path: str | Path,
    settings: EvalSettings,
    start_time: float | None = None,
    end_time: float | None = None,
) -> dict[str, Any]:
    """A processor content item for a video file (or a folder of frames), sampled as ``settings`` say."""
    video: dict[str, Any] = {"video_path": str(path), "fps": settings.fps, "max_frames": settings.max_frames}
    if start_time is not None:
        video["start_time"] = float(start_time)
    if end_time is not None:
        video["end_time"] = float(end_time)
    return {"type": "video", "video": video}


def frames_item(frames: list[Any], timestamps: list[float]) -> dict[str, Any]:
    """A processor content item for a video given as decoded frames with their times in seconds."""
    return {"type": "video", "video": {"frames": list(frames), "timestamps": [float(t) for t in timestamps]}}


def text_item(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def user_turn(*items: dict[str, Any]) -> Conversation:
    """A one-turn conversation: the user's media and text, in order."""
    return [{"role": "user", "content": list(items)}]


def media_items(sample: Sample, settings: EvalSettings) -> list[dict[str, Any]]:
    """Conversation items for ``sample.media`` (``{"type": "video", "path", "start", "end"}`` or images)."""
    items = []
    for media in sample.media:
        if media["type"] == "video":
            items.append(video_item(media["path"], settings, media.get("start"), media.get("end")))
        elif media["type"] == "image":
            items.append(image_item(media["image"]() if callable(media["image"]) else media["image"]))
        else:
            raise EvaluationError(f"{sample.id}: unknown media type {media['type']!r}")
    return items


def missing_media(sample: Sample) -> list[str]:
    """``"<type> not found: <path>"`` for each media file of ``sample`` given by a path that does not exist.

    Images given as objects or loaders are not checked. The runner fails such a sample with this as its
    recorded error instead of asking the model, so a missing file is a failed prediction whatever the
    backend (a scripted or remote predictor would not notice it), and never fails the run.
    """
    missing = []
    for media in sample.media:
        path = media.get("path") if media["type"] == "video" else media.get("image")
        if isinstance(path, (str, Path)) and not Path(path).exists():
            missing.append(f"{media['type']} not found: {path}")
    return missing


def video_media(path: str | Path, start: float | None = None, end: float | None = None) -> dict[str, Any]:
    return {"type": "video", "path": str(path), "start": start, "end": end}


def image_media(image: Any) -> dict[str, Any]:
    """An image: a path, a PIL image, or a zero-argument callable returning one (loaded lazily)."""
    return {"type": "image", "image": image}


# --------------------------------------------------------------------------------------------------
# Scoring helpers
# --------------------------------------------------------------------------------------------------


def percent(numerator: float, denominator: int) -> float:
    """100 * numerator / denominator, 0 for an empty set (reported with ``n`` = 0, never a NaN)."""
    return 100.0 * numerator / denominator if denominator else 0.0


def grouped_mean(
    predictions: Iterable[Prediction], key: Callable[[Prediction], str | Iterable[str] | None], scale: float = 100.0
) -> dict[str, float]:
    """Mean of ``prediction.score`` (x ``scale``) per group; ``key`` may return several groups or None."""
    totals: dict[str, list[float]] = defaultdict(list)
    for prediction in predictions:
        groups = key(prediction)
        if groups is None:
            continue
        for group in [groups] if isinstance(groups, str) else groups:
            totals[group].append(prediction.score or 0.0)
    return {group: scale * sum(values) / len(values) for group, values in sorted(totals.items())}


def summarize(
    predictions: list[Prediction],
    primary: str = "accuracy",
    groups: dict[str, Callable[[Prediction], str | Iterable[str] | None]] | None = None,
    scale: float = 100.0,
) -> dict[str, Any]:
    """The usual result: the mean score over all samples, counts, and the mean per group.

    Every prediction must have ``score`` set (0 for failed / unparseable ones).
    """
    n = len(predictions)
    result: dict[str, Any] = {primary: scale * sum(p.score or 0.0 for p in predictions) / n if n else 0.0}
    for name, key in (groups or {}).items():
        result[name] = grouped_mean(predictions, key, scale)
    result.update(counts(predictions))
    return result


def counts(predictions: list[Prediction]) -> dict[str, int]:
    """``n``, ``failed`` (no response) and ``unparseable`` (a response no answer could be read from)."""
    return {
        "n": len(predictions),
        "failed": sum(p.failed for p in predictions),
        "unparseable": sum(1 for p in predictions if not p.failed and p.extracted is None),
    }


def letters_for(options: list[Any]) -> str:
    """The option letters A, B, C... of ``options``."""
    if len(options) > 26:
        raise EvaluationError(f"too many options ({len(options)}) for letters A-Z")
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
