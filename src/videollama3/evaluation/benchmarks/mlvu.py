"""MLVU dev (Zhou et al., 2024): long-video multiple-choice tasks; the headline metric is M-Avg.

Layout (``MLVU/MVLU`` on the Hugging Face hub, ``MLVU/`` folder)::

    MLVU/
      json/1_plotQA.json 2_needle.json 3_ego.json 4_count.json 5_order.json 6_anomaly_reco.json
           7_topic_reasoning.json                 lists of {"video", "duration", "question", "candidates",
                                                  "answer", "question_type"}
      video/1_plotQA/*.mp4 ...                    one folder per task, named like its json file

``8_sub_scene.json`` and ``9_summary.json`` are generation tasks (judged by GPT-4) and are not part of
the multiple-choice M-Avg.
"""

from __future__ import annotations

from pathlib import Path

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
from ..io import read_json
from .common import MultipleChoiceBenchmark, by_category, macro_average, score_choices

TASKS = {
    "Topic Reasoning": "7_topic_reasoning",
    "Anomaly Recognition": "6_anomaly_reco",
    "Needle QA": "2_needle",
    "Ego Reasoning": "3_ego",
    "Plot QA": "1_plotQA",
    "Action Count": "4_count",
    "Action Order": "5_order",
}


class MLVU(MultipleChoiceBenchmark):
    """MLVU dev multiple choice: M-Avg (mean of the task accuracies), overall accuracy, per task."""

    modality = "video"
    folder = "MLVU"
    primary_metric = "m_avg"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        present = {task: stem for task, stem in TASKS.items() if (root / "json" / f"{stem}.json").exists()}
        if not present:
            raise DatasetError(f"{root}: no MLVU task file in json/ (expected e.g. json/1_plotQA.json)")
        samples = []
        for task, stem in present.items():
            for index, record in enumerate(read_json(root / "json" / f"{stem}.json")):
                candidates = [str(c) for c in record["candidates"]]
                if record["answer"] not in candidates:
                    raise DatasetError(f"json/{stem}.json[{index}]: answer {record['answer']!r} is not a candidate")
                samples.append(
                    Sample(
                        id=f"{stem}/{index}",
                        question=record["question"],
                        answer=letters_for(candidates)[candidates.index(record["answer"])],
                        options=candidates,
                        category=task,
                        media=[video_media(root / "video" / stem / record["video"])],
                        meta={"duration": record.get("duration")},
                    )
                )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.video_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        result = score_choices(predictions, {"by_task": by_category})
        return {"m_avg": macro_average(result["by_task"]), **result}
