"""Perception Test (Pătrăucean et al., 2023), multiple-choice video QA, validation split.

Layout (``google-deepmind/perception_test`` release)::

    PerceptionTest/
      mc_question_valid.json     {video_id: {"metadata": {"video_id", "num_frames", ...},
                                  "mc_question": [{"id", "question", "options" (3), "answer_id",
                                                   "area", "reasoning", "tag"}, ...]}, ...}
                                 (all_valid.json, the full annotation file, has the same fields)
      valid_videos/<video_id>.mp4   (or videos/)
"""

from __future__ import annotations

from pathlib import Path

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
from ..io import find_video, first_existing, read_json, require_file
from .common import MultipleChoiceBenchmark, by_meta, score_choices


class PerceptionTest(MultipleChoiceBenchmark):
    """Perception Test val: accuracy overall, per area and per reasoning type."""

    modality = "video"
    folder = "PerceptionTest"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotations = read_json(require_file(root, "mc_question_valid.json", "mc_question_val.json", "all_valid.json"))
        video_dir = first_existing(root / "valid_videos", root / "videos") or root / "videos"
        samples = []
        for video_key, entry in annotations.items():
            video_id = entry.get("metadata", {}).get("video_id", video_key)
            for question in entry.get("mc_question", []):
                if "answer_id" not in question:
                    raise DatasetError(f"{video_id} question {question.get('id')}: no answer_id (test split?)")
                options = [str(o) for o in question["options"]]
                samples.append(
                    Sample(
                        id=f"{video_id}/{question['id']}",
                        question=question["question"],
                        answer=letters_for(options)[int(question["answer_id"])],
                        options=options,
                        category=question.get("area"),
                        media=[video_media(find_video(video_dir, video_id))],
                        meta={"reasoning": question.get("reasoning"), "tag": question.get("tag")},
                    )
                )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.video_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        return score_choices(
            predictions, {"by_area": lambda p: p.sample.category, "by_reasoning": by_meta("reasoning")}
        )
