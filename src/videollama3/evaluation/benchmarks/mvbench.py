"""MVBench (Li et al., 2024): 20 temporal tasks of 200 multiple-choice questions each.

Layout (``OpenGVLab/MVBench`` on the Hugging Face hub)::

    MVBench/
      json/action_sequence.json ...            one list per task:
                                               {"video", "question", "candidates", "answer"[, "start", "end"]}
      video/star/Charades_v1_480/*.mp4 ...     the source datasets' videos, one folder per source
      video/tvqa/frames_fps3_hq/<clip>/        Episodic Reasoning: folders of frames (read at 3 fps)

``answer`` is the text of the right candidate. Tasks with ``start`` / ``end`` are trimmed to that span.
"""

from __future__ import annotations

from pathlib import Path

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
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


class MVBench(MultipleChoiceBenchmark):
    """MVBench: accuracy over all questions and per task."""

    modality = "video"
    folder = "MVBench"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        present = [task for task, (file, _, _) in TASKS.items() if (root / "json" / file).exists()]
        if not present:
            raise DatasetError(f"{root}: no MVBench task file in json/ (expected e.g. json/action_sequence.json)")
        samples = []
        for task in present:
            file, video_folder, trimmed = TASKS[task]
            for index, record in enumerate(read_json(root / "json" / file)):
                candidates = [str(c) for c in record["candidates"]]
                if record["answer"] not in candidates:
                    raise DatasetError(f"json/{file}[{index}]: answer {record['answer']!r} is not a candidate")
                start = record.get("start") if trimmed else None
                end = record.get("end") if trimmed else None
                samples.append(
                    Sample(
                        id=f"{Path(file).stem}/{index}",
                        question=record["question"],
                        answer=letters_for(candidates)[candidates.index(record["answer"])],
                        options=candidates,
                        category=task,
                        media=[video_media(root / "video" / video_folder / record["video"], start, end)],
                    )
                )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        media = sample.media[0]
        letters = letters_for(sample.options)
        return user_turn(
            video_item(media["path"], settings, media["start"], media["end"]),
            text_item(prompts.video_mcq(sample.question, sample.options, letters)),
        )
