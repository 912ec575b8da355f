"""MLVU dev (Zhou et al., 2024): long-video multiple-choice tasks; the headline metric is M-Avg.

Layouts (either)::

    MLVU/                                         ``MLVU/MVLU`` on the Hugging Face hub
      json/1_plotQA.json 2_needle.json 3_ego.json 4_count.json 5_order.json 6_anomaly_reco.json
           7_topic_reasoning.json                 lists of {"video", "duration", "question", "candidates",
                                                  "answer", "question_type"}
      video/1_plotQA/*.mp4 ...                    one folder per task, named like its json file

    MLVU/                                         JUNJIE99/MLVU GitHub release
      data/1_plotQA.json ...                      the same files
      video/plotQA/*.mp4 ...                      (or video/1_plotQA/): the folders of MLVU's own script

``8_sub_scene.json`` and ``9_summary.json`` are generation tasks (judged by GPT-4) and are not part of
the multiple-choice M-Avg.

Scoring follows MLVU's ``choice_bench.py``: the correct letter of a question with a repeated candidate
is the letter of the candidate's last occurrence, and a question whose answer is not among its
candidates (two in ``2_needle.json``) is kept and counted wrong; both are reported as data problems.
M-Avg is the mean of the per-task accuracies.
"""

from __future__ import annotations

from pathlib import Path

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
from .common import MultipleChoiceBenchmark, by_category, macro_average, score_choices
from .mvbench import choice_answer, read_choice_records

# task -> (file stem, the video folder name of MLVU's own evaluation script)
TASKS = {
    "Topic Reasoning": ("7_topic_reasoning", "topic_reasoning"),
    "Anomaly Recognition": ("6_anomaly_reco", "anomaly_reco"),
    "Needle QA": ("2_needle", "needle"),
    "Ego Reasoning": ("3_ego", "ego"),
    "Plot QA": ("1_plotQA", "plotQA"),
    "Action Count": ("4_count", "count"),
    "Action Order": ("5_order", "order"),
}
# Questions per task file of the release (JUNJIE99/MLVU data/, identical to the hub's json/): 2,175 in all.
PUBLISHED_COUNTS = {
    "1_plotQA": 539,
    "2_needle": 355,
    "3_ego": 352,
    "4_count": 206,
    "5_order": 259,
    "6_anomaly_reco": 200,
    "7_topic_reasoning": 264,
}
ANNOTATION_FOLDERS = ("json", "data")


class MLVU(MultipleChoiceBenchmark):
    """MLVU dev multiple choice: M-Avg (mean of the task accuracies), overall accuracy, per task."""

    modality = "video"
    folder = "MLVU"
    primary_metric = "m_avg"

    def _annotation_folder(self, root: Path) -> Path:
        for name in ANNOTATION_FOLDERS:
            if any((root / name / f"{stem}.json").exists() for stem, _ in TASKS.values()):
                return root / name
        raise DatasetError(f"{root}: no MLVU task file in json/ or data/ (expected e.g. json/1_plotQA.json)")

    @staticmethod
    def _video_folder(root: Path, stem: str, short_name: str) -> Path:
        """The hub's ``video/<stem>``, else the release script's ``video/<short name>`` when it exists."""
        hub_folder = root / "video" / stem
        if hub_folder.is_dir() or not (root / "video" / short_name).is_dir():
            return hub_folder
        return root / "video" / short_name

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        annotations = self._annotation_folder(root)
        samples = []
        for task, (stem, short_name) in TASKS.items():
            path = annotations / f"{stem}.json"
            label = f"{annotations.name}/{stem}.json"
            if not path.exists():
                self.report("missing_file", f"{label} ({task}) is missing; the task is not evaluated")
                continue
            video_folder = self._video_folder(root, stem, short_name)
            records = read_choice_records(self, path, label)
            for index, record in records:
                candidates = [str(c) for c in record["candidates"]]
                sample_id = f"{stem}/{index}"
                video = video_folder / str(record["video"])
                self.check_media(video, sample_id)
                samples.append(
                    Sample(
                        id=sample_id,
                        question=record["question"],
                        answer=choice_answer(self, candidates, record["answer"], f"{label}[{index}]"),
                        options=candidates,
                        category=task,
                        media=[video_media(video)],
                        meta={"duration": record.get("duration"), "answer_text": str(record["answer"])},
                    )
                )
            self.check_count(len(records), PUBLISHED_COUNTS[stem], label)
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.video_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        result = score_choices(predictions, {"by_task": by_category})
        return {"m_avg": macro_average(result["by_task"]), **result}
