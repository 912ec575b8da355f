"""Charades-STA (Gao et al., 2017): temporal grounding of a sentence in a video; mIoU and R1@{0.3,0.5,0.7}.

Layouts (either)::

    Charades-STA/                             the original release (jiyanggao/TALL)
      charades_sta_test.txt                   lines "<video> <start> <end>##<sentence>"
      Charades_v1_480/<video>.mp4             (or Charades_v1/, videos/)

    Charades-STA/                             the VideoLLaMA3 evaluation file
      charades_annotations_test-random_prompt.json
                                              list of {"question_id", "video", "conversation":
                                              [{"content": question}, ...], "timestamps": [[start, end]]}
      Charades_v1/<video>

The answer is read as an interval in seconds from free text (``1.5-3.0 s``, ``from 1.5s to 3s``,
``00:01-00:03``, ``[1.5, 3.0]``...); an answer without one counts as IoU 0 and as unparseable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import (
    Benchmark,
    DatasetError,
    EvalSettings,
    Prediction,
    Sample,
    counts,
    text_item,
    user_turn,
    video_item,
    video_media,
)
from ..extraction import extract_intervals
from ..io import find_video, first_existing, read_json
from ..metrics import grounding_metrics, interval_iou

JSON_FILE = "charades_annotations_test-random_prompt.json"
TXT_FILE = "charades_sta_test.txt"
# The query wording used with the original release's sentences (its file has no prompt of its own).
QUERY_TEMPLATE = 'Find the start and end time of the moment described by the query "{query}" in the video. '


class CharadesSTA(Benchmark):
    """Charades-STA test: mIoU (primary), R1@0.3, R1@0.5, R1@0.7, all in percent."""

    modality = "video"
    folder = "Charades-STA"
    primary_metric = "mIoU"

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        video_dir = first_existing(root / "Charades_v1_480", root / "Charades_v1", root / "videos")
        video_dir = video_dir or root / "Charades_v1_480"
        if (root / JSON_FILE).exists():
            samples = []
            for record in read_json(root / JSON_FILE):
                start, end = record["timestamps"][0]
                samples.append(
                    Sample(
                        id=str(record["question_id"]),
                        question=record["conversation"][0]["content"],
                        answer=(float(start), float(end)),
                        media=[video_media(video_dir / record["video"])],
                    )
                )
            return samples
        if not (root / TXT_FILE).exists():
            raise DatasetError(f"{root}: expected {TXT_FILE} or {JSON_FILE}")
        samples = []
        for number, line in enumerate((root / TXT_FILE).read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            head, _, sentence = line.partition("##")
            try:
                video, start, end = head.split()
                interval = (float(start), float(end))
            except ValueError as exc:
                raise DatasetError(f"{TXT_FILE}:{number + 1}: expected '<video> <start> <end>##<sentence>'") from exc
            samples.append(
                Sample(
                    id=f"{video}_{number}",
                    question=QUERY_TEMPLATE.format(query=sentence.strip().rstrip(".")),
                    answer=interval,
                    media=[video_media(find_video(video_dir, video))],
                    meta={"sentence": sentence.strip()},
                )
            )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(video_item(sample.media[0]["path"], settings), text_item(prompts.grounding(sample.question)))

    def score(self, predictions: list[Prediction]) -> dict[str, Any]:
        ious = []
        for prediction in predictions:
            intervals = None if prediction.failed else extract_intervals(prediction.response)
            prediction.extracted = intervals
            prediction.score = interval_iou(intervals, prediction.sample.answer) if intervals else 0.0
            prediction.correct = prediction.score >= 0.5
            ious.append(prediction.score)
        return {**grounding_metrics(ious), **counts(predictions)}
