"""LongVideoBench val (Wu et al., 2024): referring reasoning over long videos with interleaved subtitles.

Layout (``longvideobench/LongVideoBench`` on the Hugging Face hub, archives extracted)::

    LongVideoBench/
      lvb_val.json        list of {"id", "video_id", "video_path", "subtitle_path", "duration",
                          "starting_timestamp_for_subtitles", "question", "candidates", "correct_choice",
                          "question_category", "topic_category", "level", "duration_group", ...}
      videos/<video_path>
      subtitles/<subtitle_path>   JSON list of {"timestamp": [start, end], "text"} or
                                  {"start": "HH:MM:SS.fff", "end": ..., "line"}

The official prompt interleaves the video with its subtitles: frames up to a subtitle's midpoint, then
the subtitle's text (if a sampled frame falls within it), ..., then the question. The video is decoded
once (the processor's sampler) and passed as consecutive frame segments.

The right option is ``correct_choice`` (an index), so the few questions with repeated candidates keep
their official letter; they are reported, as are indices outside the candidates and missing videos or
subtitle files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, frames_item, letters_for, text_item, video_media
from ..io import read_json
from .common import MultipleChoiceBenchmark, by_meta, score_choices


def _clock_seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def interleave(timestamps: list[float], subtitles: list[dict[str, Any]], offset: float, duration: float) -> list:
    """The official interleaving: a list of frame indices (int) and subtitle texts (str), in order."""
    out: list = []
    next_frame = 0
    for subtitle in subtitles:
        if "timestamp" in subtitle:
            start, end = subtitle["timestamp"]
            if not isinstance(end, (int, float)):
                end = duration  # an open last subtitle lasts to the end
            text = subtitle["text"]
        else:
            start, end = _clock_seconds(subtitle["start"]), _clock_seconds(subtitle["end"])
            text = subtitle["line"]
        start, end = float(start) - offset, float(end) - offset
        middle = (start + end) / 2
        while next_frame < len(timestamps) and timestamps[next_frame] <= middle:
            out.append(next_frame)
            next_frame += 1
        if end - start < 1:  # a short subtitle counts if a frame is within half a second of its middle
            start, end = middle - 0.5, middle + 0.5
        if any(start < t < end for t in timestamps):
            out.append(text)
    out.extend(range(next_frame, len(timestamps)))
    return out


PUBLISHED_VALIDATION_QUESTIONS = 1337
REQUIRED_KEYS = ("id", "question", "candidates", "correct_choice", "video_path", "subtitle_path", "duration")


class LongVideoBench(MultipleChoiceBenchmark):
    """LongVideoBench val: accuracy overall, per duration group, per question category and per level."""

    modality = "video"
    folder = "LongVideoBench"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        records = read_json(root / "lvb_val.json")
        samples = []
        for index, record in enumerate(records):
            missing = [key for key in REQUIRED_KEYS if key not in record]
            if missing:
                self.report("malformed_record", f"lvb_val.json[{index}]: no {', '.join(missing)}; skipped")
                continue
            sample_id = str(record["id"])
            candidates = [str(c) for c in record["candidates"]]
            choice = record["correct_choice"]
            if not (isinstance(choice, int) and 0 <= choice < len(candidates)):
                self.report("answer_not_in_options", f"{sample_id}: correct_choice {choice!r} is not a candidate; kept")
                choice = None
            if len(set(candidates)) < len(candidates):
                self.report("repeated_options", f"{sample_id}: repeated candidates {candidates}")
            video = root / "videos" / record["video_path"]
            subtitles = root / "subtitles" / record["subtitle_path"]
            self.check_media(video, sample_id)
            self.check_media(subtitles, sample_id)
            samples.append(
                Sample(
                    id=sample_id,
                    question=record["question"],
                    answer=letters_for(candidates)[choice] if choice is not None else None,
                    options=candidates,
                    category=record.get("question_category"),
                    media=[video_media(video)],
                    meta={
                        "subtitle_path": str(subtitles),
                        "offset": float(record.get("starting_timestamp_for_subtitles") or 0.0),
                        "duration": float(record["duration"]),
                        "duration_group": record.get("duration_group"),
                        "level": record.get("level"),
                        "topic_category": record.get("topic_category"),
                    },
                )
            )
        self.check_count(len(samples), PUBLISHED_VALIDATION_QUESTIONS, "lvb_val.json")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        from ...processing.video import load_video

        frames, timestamps = load_video(sample.media[0]["path"], fps=settings.fps, max_frames=settings.max_frames)
        subtitle_path = Path(sample.meta["subtitle_path"])
        if not subtitle_path.exists():
            raise DatasetError(f"missing subtitle file {subtitle_path}")
        subtitles = read_json(subtitle_path)
        sequence = interleave(timestamps, subtitles, sample.meta["offset"], sample.meta["duration"])
        sequence.append(prompts.longvideobench(sample.question, sample.options, letters_for(sample.options)))
        content, segment = [], []
        for element in sequence:
            if isinstance(element, int):
                segment.append(element)
                continue
            if segment:
                content.append(frames_item([frames[i] for i in segment], [timestamps[i] for i in segment]))
                segment = []
            content.append(text_item(element))
        return [{"role": "user", "content": content}]

    def score(self, predictions):
        return score_choices(
            predictions,
            {
                "by_duration_group": by_meta("duration_group"),
                "by_category": lambda p: p.sample.category,
                "by_level": by_meta("level"),
            },
        )
