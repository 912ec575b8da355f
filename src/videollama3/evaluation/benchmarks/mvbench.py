"""MVBench (Li et al., 2024): 20 temporal tasks of 200 multiple-choice questions each.

Layout (``OpenGVLab/MVBench`` on the Hugging Face hub)::

    MVBench/
      json/action_sequence.json ...            one list per task:
                                               {"video", "question", "candidates", "answer"[, "start", "end"]}
      video/star/Charades_v1_480/*.mp4 ...     the source datasets' videos, one folder per source
      video/tvqa/frames_fps3_hq/<clip>/        Episodic Reasoning: folders of frames (read at 3 fps)

``answer`` is the text of the right candidate. Tasks with ``start`` / ``end`` are trimmed to that span.

The correct letter follows the official loader (``qa_template`` of MVBench's evaluation, copied by MLVU
and the VideoLLaMA3 release): the *last* candidate equal to the answer. A question whose answer is not
among its candidates is kept and can never be answered right (the official letter is ``"@"``); both
are reported as data problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Sample,
    letters_for,
    text_item,
    user_turn,
    video_item,
    video_media,
)
from ..io import read_json
from .common import MultipleChoiceBenchmark

# task -> (annotation file, video folder under video/, trimmed to start/end)
TASKS: dict[str, tuple[str, str, bool]] = {
    "Action Sequence": ("action_sequence.json", "star/Charades_v1_480", True),
    "Action Prediction": ("action_prediction.json", "star/Charades_v1_480", True),
    "Action Antonym": ("action_antonym.json", "ssv2_video", False),
    "Fine-grained Action": ("fine_grained_action.json", "Moments_in_Time_Raw/videos", False),
    "Unexpected Action": ("unexpected_action.json", "FunQA_test/test", False),
    "Object Existence": ("object_existence.json", "clevrer/video_validation", False),
    "Object Interaction": ("object_interaction.json", "star/Charades_v1_480", True),
    "Object Shuffle": ("object_shuffle.json", "perception/videos", False),
    "Moving Direction": ("moving_direction.json", "clevrer/video_validation", False),
    "Action Localization": ("action_localization.json", "sta/sta_video", True),
    "Scene Transition": ("scene_transition.json", "scene_qa/video", False),
    "Action Count": ("action_count.json", "perception/videos", False),
    "Moving Count": ("moving_count.json", "clevrer/video_validation", False),
    "Moving Attribute": ("moving_attribute.json", "clevrer/video_validation", False),
    "State Change": ("state_change.json", "perception/videos", False),
    "Fine-grained Pose": ("fine_grained_pose.json", "nturgbd", False),
    "Character Order": ("character_order.json", "perception/videos", False),
    "Egocentric Navigation": ("egocentric_navigation.json", "vlnqa", False),
    "Episodic Reasoning": ("episodic_reasoning.json", "tvqa/frames_fps3_hq", True),
    "Counterfactual Inference": ("counterfactual_inference.json", "clevrer/video_validation", False),
}
QUESTIONS_PER_TASK = 200


def official_answer_index(candidates: list[str], answer: str) -> int | None:
    """The index the official MVBench / MLVU loaders give the answer: the last equal candidate, or None.

    Their ``qa_template`` loops over every candidate and overwrites the index on each match, so a
    repeated candidate gets the letter of its last occurrence; without a match the letter is ``"@"``,
    which no response can equal.
    """
    index = None
    for position, candidate in enumerate(candidates):
        if candidate == answer:
            index = position
    return index


def read_choice_records(benchmark: Benchmark, path: Path, label: str) -> list[tuple[int, dict[str, Any]]]:
    """``(index, record)`` of the usable records of an MVBench-style task file; the rest is reported.

    A usable record has a ``video``, a ``question``, a list of ``candidates`` and an ``answer``; record
    indices are the positions in the file (sample ids stay stable when a record is skipped).
    """
    records = read_json(path)
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a list of questions, got {type(records).__name__}")
    if not records:
        benchmark.report("empty_file", f"{label} holds no questions")
    usable = []
    for index, record in enumerate(records):
        missing = [
            key
            for key in ("video", "question", "candidates", "answer")
            if not isinstance(record, dict) or key not in record
        ]
        if missing or not isinstance(record["candidates"], list) or not record["candidates"]:
            reason = f"no {', '.join(missing)}" if missing else "candidates is not a non-empty list"
            benchmark.report("malformed_record", f"{label}[{index}]: {reason}; skipped")
            continue
        if not str(record["question"]).strip() or not any(str(c).strip() for c in record["candidates"]):
            # The official scripts keep such a question (and its letter); so do we, visibly.
            benchmark.report("empty_question", f"{label}[{index}]: empty question or candidates; kept")
        usable.append((index, record))
    return usable


def choice_answer(benchmark: Benchmark, candidates: list[str], answer: Any, where: str) -> str | None:
    """The correct letter by the official rule; reports answers outside the candidates and repeats."""
    answer = str(answer)
    index = official_answer_index(candidates, answer)
    if index is None:
        benchmark.report(
            "answer_not_in_options",
            f"{where}: answer {answer!r} is not among the candidates {candidates}; kept, it counts as wrong",
        )
        return None
    if len(set(candidates)) < len(candidates):
        benchmark.report(
            "repeated_options",
            f"{where}: repeated candidates {candidates}; the answer is {letters_for(candidates)[index]} "
            "(its last occurrence, as the official script)",
        )
    return letters_for(candidates)[index]


class MVBench(MultipleChoiceBenchmark):
    """MVBench: accuracy over all questions and per task."""

    modality = "video"
    folder = "MVBench"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        present = [task for task, (file, _, _) in TASKS.items() if (root / "json" / file).exists()]
        if not present:
            raise DatasetError(f"{root}: no MVBench task file in json/ (expected e.g. json/action_sequence.json)")
        for task, (file, _, _) in TASKS.items():
            if task not in present:
                self.report("missing_file", f"json/{file} ({task}) is missing; the task is not evaluated")
        samples = []
        for task in present:
            file, video_folder, trimmed = TASKS[task]
            label = f"json/{file}"
            records = read_choice_records(self, root / "json" / file, label)
            for index, record in records:
                candidates = [str(c) for c in record["candidates"]]
                sample_id = f"{Path(file).stem}/{index}"
                start = record.get("start") if trimmed else None
                end = record.get("end") if trimmed else None
                path = root / "video" / video_folder / str(record["video"])
                self.check_media(path, sample_id)
                samples.append(
                    Sample(
                        id=sample_id,
                        question=record["question"],
                        answer=choice_answer(self, candidates, record["answer"], f"{label}[{index}]"),
                        options=candidates,
                        category=task,
                        media=[video_media(path, start, end)],
                        meta={"answer_text": str(record["answer"])},
                    )
                )
            self.check_count(len(records), QUESTIONS_PER_TASK, label)
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        media = sample.media[0]
        letters = letters_for(sample.options)
        return user_turn(
            video_item(media["path"], settings, media["start"], media["end"]),
            text_item(prompts.video_mcq(sample.question, sample.options, letters)),
        )
