"""Video-MME (Fu et al., 2024): 900 videos, 2,700 four-option questions, without and with subtitles.

Layout (``lmms-lab/Video-MME`` on the Hugging Face hub, archives extracted)::

    Video-MME/
      videomme/test-00000-of-00001.parquet   (or test-00000-of-00001.parquet, or a .json list)
          columns: video_id, duration (short/medium/long), domain, sub_category, url, videoID,
                   question_id, task_type, question, options (["A. ...", ...]), answer ("A".."D")
      data/<videoID>.mp4                     (or videos/)
      subtitle/<videoID>.srt                 (or subtitles/; not every video has one)

With subtitles, the official prompt lists, for each sampled frame time t, the subtitle shown at t
(``start < t < end``), in frame order; the frame times are the processor's own sampling of the video,
computed here from the container's timestamps without decoding.

An answer that is not the letter of one of the options is reported and kept (counted wrong); missing
videos are reported (those samples fail). Not every video has a subtitle file: that is not a problem.
Unlike the official ``eval_your_results.py``, which divides by the questions it could read a letter from,
unreadable answers count as wrong (scores are over every question).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    text_item,
    user_turn,
    video_item,
    video_media,
)
from ..io import find_video, first_existing, read_json, read_parquet, read_srt
from .common import by_category, by_meta, score_choices

_OPTION_PREFIX = re.compile(r"^\s*[A-D][\.\)]\s*")
_SUB_SUFFIX = "@sub"
PUBLISHED_QUESTIONS = 2700


def sampled_timestamps(path: str | Path, settings: EvalSettings, start=None, end=None) -> list[float]:
    """The times (s) of the frames the processor samples from a video, without decoding it."""
    try:
        from ...processing.video import VideoSampling, plan_video
    except ImportError as exc:  # pragma: no cover - the processor ships with the package
        raise DatasetError("subtitles need videollama3.processing (frame times)") from exc
    return list(plan_video(str(path), VideoSampling(settings.fps, settings.max_frames, start, end)).timestamps)


def subtitles_at(cues, timestamps: list[float]) -> str:
    """The official Video-MME selection: per frame time, the first cue with start < t < end, non-empty."""
    lines = []
    for t in timestamps:
        text = next((cue.text for cue in cues if cue.start < t < cue.end), "")
        if text.strip():
            lines.append(text)
    return "\n".join(lines)


class VideoMME(Benchmark):
    """Video-MME: accuracy overall, per duration and per task type; ``subtitles`` = without/with/both."""

    modality = "video"
    folder = "Video-MME"

    def __init__(self, name: str | None = None, subtitles: str = "both", **options: Any) -> None:
        super().__init__(name, **options)
        if subtitles not in ("without", "with", "both"):
            raise DatasetError(f"subtitles must be without, with or both, got {subtitles!r}")
        self.subtitles = subtitles
        self.primary_metric = "accuracy_wo_sub" if subtitles == "both" else "accuracy"

    def _records(self, root: Path) -> list[dict[str, Any]]:
        parquet = first_existing(
            root / "videomme" / "test-00000-of-00001.parquet",
            root / "test-00000-of-00001.parquet",
            *sorted(root.glob("videomme/*.parquet")),
            *sorted(root.glob("*.parquet")),
        )
        if parquet is not None:
            return read_parquet(parquet)
        json_file = first_existing(root / "videomme" / "test.json", root / "videomme.json", root / "test.json")
        if json_file is None:
            raise DatasetError(f"{root}: no Video-MME annotations (videomme/test-00000-of-00001.parquet)")
        return read_json(json_file)

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        video_dir = first_existing(root / "data", root / "videos") or root / "data"
        subtitle_dir = first_existing(root / "subtitle", root / "subtitles") or root / "subtitle"
        samples = []
        records = self._records(root)
        for record in records:
            options = [str(o) for o in record["options"]]
            question_id = str(record["question_id"])
            answer = str(record["answer"]).strip()
            if len(answer) != 1 or answer not in "ABCDEFGHIJ"[: len(options)]:
                self.report("answer_not_in_options", f"{question_id}: answer {answer!r} is not an option letter; kept")
                answer = None
            video = find_video(video_dir, str(record["videoID"]))
            self.check_media(video, question_id)
            base = Sample(
                id=question_id,
                question=record["question"],
                answer=answer,
                # The dataset's option lines ("A. text") go into the prompt; their texts serve extraction.
                options=[_OPTION_PREFIX.sub("", o) for o in options],
                category=record.get("task_type"),
                media=[video_media(video)],
                meta={
                    "option_lines": options,
                    "duration": record.get("duration"),
                    "domain": record.get("domain"),
                    "sub_category": record.get("sub_category"),
                    "video_id": record.get("video_id"),
                    "subtitle_path": str(subtitle_dir / f"{record['videoID']}.srt"),
                    "subtitles": False,
                },
            )
            if self.subtitles in ("without", "both"):
                samples.append(base)
            if self.subtitles in ("with", "both"):
                with_sub = Sample(**{**base.__dict__, "meta": {**base.meta, "subtitles": True}})
                if self.subtitles == "both":
                    with_sub.id = base.id + _SUB_SUFFIX
                samples.append(with_sub)
        self.check_count(len(records), PUBLISHED_QUESTIONS, "Video-MME annotations")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        path = sample.media[0]["path"]
        subtitles = None
        if sample.meta["subtitles"]:
            subtitle_path = Path(sample.meta["subtitle_path"])
            # A video without a subtitle file gets an empty list, as in the official code.
            cues = read_srt(subtitle_path) if subtitle_path.exists() else []
            subtitles = subtitles_at(cues, sampled_timestamps(path, settings)) if cues else ""
        text = prompts.videomme(sample.question, sample.meta["option_lines"], subtitles)
        return user_turn(video_item(path, settings), text_item(text))

    def _score_group(self, predictions: list[Prediction]) -> dict[str, Any]:
        # The official eval_your_results.py reports per duration, per video category (domain) and per task.
        groups = {"by_duration": by_meta("duration"), "by_domain": by_meta("domain"), "by_task": by_category}
        return score_choices(predictions, groups)

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        if self.subtitles != "both":
            return self._score_group(predictions)
        without = [p for p in predictions if not p.sample.meta["subtitles"]]
        with_sub = [p for p in predictions if p.sample.meta["subtitles"]]
        wo, w = self._score_group(without), self._score_group(with_sub)
        return {
            "accuracy_wo_sub": wo["accuracy"],
            "accuracy_w_sub": w["accuracy"],
            "wo_sub": wo,
            "w_sub": w,
            **{k: wo[k] + w[k] for k in ("n", "failed", "unparseable")},
        }
