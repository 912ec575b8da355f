"""NExT-QA multiple choice (Xiao et al., 2021).

Layout (``doc-doc/NExT-QA`` release)::

    NExT-QA/
      test.csv / val.csv        columns: video, frame_count, width, height, question, answer (index 0-4),
                                qid, type (CW CH TN TC TP DL DC DO), a0 ... a4
      map_vid_vidorID.json      {video: "<folder>/<vidor id>"}
      NExTVideo/<folder>/<vidor id>.mp4

The right option is given by its index, so repeated option texts (a few real questions have them) do
not change the answer. Per-type accuracy follows ``eval_mc.py``: ``TP`` questions count as ``TN``.
Rows with a bad answer or an unmapped video are reported as data problems, not fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import prompts
from ..base import EvalSettings, Sample, letters_for, text_item, user_turn, video_item, video_media
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
# Rows of the released csv files (doc-doc/NExT-QA dataset/nextqa/).
PUBLISHED_COUNTS = {"test": 8564, "val": 4996}
# eval_mc.py merges the "previous" temporal questions into "before & after".
OFFICIAL_TYPE = {"TP": "TN"}


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
        if not rows:
            self.report("empty_file", f"{self.split}.csv holds no questions")
        samples = []
        for row in rows:
            where = f"{self.split}.csv qid {row.get('qid')} video {row.get('video')}"
            options = [row[f"a{i}"] for i in range(5) if row.get(f"a{i}") not in (None, "")]
            answer = (row.get("answer") or "").strip()
            # The released csv holds the index of the right option; some conversions hold its text.
            index = int(answer) if answer.isdigit() else options.index(answer) if answer in options else None
            if index is None or index >= len(options):
                self.report(
                    "answer_not_in_options", f"{where}: answer {answer!r} is not an option; kept, counts as wrong"
                )
                index = None
            video = str(row["video"])
            if video in video_map:
                path = root / "NExTVideo" / f"{video_map[video]}.mp4"
                self.check_media(path, f"{video}_{row['qid']}")
            else:
                self.report("missing_media", f"{where}: map_vid_vidorID.json has no entry for the video")
                path = root / "NExTVideo" / f"{video}.mp4"
            code = row.get("type", "")
            samples.append(
                Sample(
                    id=f"{video}_{row['qid']}",
                    question=row["question"],
                    answer=letters_for(options)[index] if index is not None else None,
                    options=options,
                    category=CATEGORIES.get(code, code),
                    media=[video_media(path)],
                    meta={"type": OFFICIAL_TYPE.get(code, code), "type_code": code},
                )
            )
        if self.split in PUBLISHED_COUNTS:
            self.check_count(len(samples), PUBLISHED_COUNTS[self.split], f"{self.split}.csv")
        return samples

    def build_conversation(self, sample: Sample, settings: EvalSettings):
        return user_turn(
            video_item(sample.media[0]["path"], settings),
            text_item(prompts.video_mcq(sample.question, sample.options, letters_for(sample.options))),
        )

    def score(self, predictions):
        return score_choices(predictions, {"by_category": lambda p: p.sample.category, "by_type": by_meta("type")})
