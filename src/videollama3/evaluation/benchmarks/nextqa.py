"""NExT-QA multiple choice (Xiao et al., 2021).

Layout (``doc-doc/NExT-QA`` release)::

    NExT-QA/
      test.csv / val.csv        columns: video, frame_count, width, height, question, answer (index 0-4),
                                qid, type (CW CH TN TC TP DL DC DO), a0 ... a4
      map_vid_vidorID.json      {video: "<folder>/<vidor id>"}
      NExTVideo/<folder>/<vidor id>.mp4
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import DatasetError, EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
from ..io import read_csv, read_json
from .common import MultipleChoiceBenchmark, by_meta, score_choices

# Question type codes -> the three categories NExT-QA reports.
CATEGORIES = {
    "CW": "Causal",
    "CH": "Causal",
    "TN": "Temporal",
    "TC": "Temporal",
    "TP": "Temporal",
    "DL": "Descriptive",
    "DC": "Descriptive",
    "DO": "Descriptive",
}


class NExTQA(MultipleChoiceBenchmark):
    """NExT-QA MC: accuracy overall, per category (Causal / Temporal / Descriptive) and per type code."""

    modality = "video"
    folder = "NExT-QA"

    def __init__(self, name: str | None = None, split: str = "test", **options: Any) -> None:
        super().__init__(name, **options)
        self.split = split

    def load(self, data_root: str | Path) -> list[Sample]:
        root = Path(data_root)
        rows = read_csv(root / f"{self.split}.csv")
        video_map = read_json(root / "map_vid_vidorID.json")
        samples = []
        for row in rows:
            options = [row[f"a{i}"] for i in range(5) if row.get(f"a{i}") not in (None, "")]
            answer = row["answer"].strip()
            # The released csv holds the index of the right option; some conversions hold its text.
            index = int(answer) if answer.isdigit() else options.index(answer) if answer in options else None
            if index is None or index >= len(options):
                raise DatasetError(f"{self.split}.csv qid {row.get('qid')}: bad answer {answer!r}")
            video = str(row["video"])
            if video not in video_map:
                raise DatasetError(f"map_vid_vidorID.json has no entry for video {video}")
            samples.append(
                Sample(
                    id=f"{video}_{row['qid']}",
                    question=row["question"],
                    answer=letters_for(options)[index],
                    options=options,
                    category=CATEGORIES.get(row.get("type", ""), row.get("type")),
                    media=[video_media(root / "NExTVideo" / f"{video_map[video]}.mp4")],
                    meta={"type": row.get("type")},
                )
            )
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.video_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        return score_choices(predictions, {"by_category": lambda p: p.sample.category, "by_type": by_meta("type")})
