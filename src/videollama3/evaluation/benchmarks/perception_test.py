"""Perception Test (Pătrăucean et al., 2023), multiple-choice video QA, validation split.

Layout (``google-deepmind/perception_test`` release)::

    PerceptionTest/
      mc_question_valid.json     {video_id: {"metadata": {"video_id", "num_frames", ...},
                                  "mc_question": [{"id", "question", "options" (3), "answer_id",
                                                   "area", "reasoning", "tag"}, ...]}, ...}
                                 (all_valid.json, the full annotation file, has the same fields)
      valid_videos/<video_id>.mp4   (or videos/)

Questions without an ``answer_id`` (the test split has none: it is refused) or with one outside the
options, and missing videos, are reported as data problems.
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
        samples, unanswered = [], 0
        for video_key, entry in annotations.items():
            video_id = entry.get("metadata", {}).get("video_id", video_key)
            video = find_video(video_dir, video_id)
            for question in entry.get("mc_question", []):
                sample_id = f"{video_id}/{question.get('id')}"
                options = [str(o) for o in question.get("options", [])]
                if "answer_id" not in question:
                    unanswered += 1
                    self.report("missing_answer", f"{sample_id}: no answer_id; skipped")
                    continue
                answer_id = question["answer_id"]
                if isinstance(answer_id, str) and answer_id.strip().isdigit():
                    answer_id = int(answer_id)  # lmms-lab's conversion stores the index as a string
                if not (isinstance(answer_id, int) and 0 <= answer_id < len(options)):
                    self.report("answer_not_in_options", f"{sample_id}: answer_id {answer_id!r} is not an option; kept")
                    answer_id = None
                self.check_media(video, sample_id)
                samples.append(
                    Sample(
                        id=sample_id,
                        question=question["question"],
                        answer=letters_for(options)[answer_id] if answer_id is not None else None,
                        options=options,
                        category=question.get("area"),
                        media=[video_media(video)],
                        meta={"reasoning": question.get("reasoning"), "tag": question.get("tag")},
                    )
                )
        if unanswered and not samples:
            raise DatasetError(f"{root}: no question has an answer_id (the test split?): nothing can be scored")
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
