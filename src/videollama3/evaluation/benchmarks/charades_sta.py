"""Charades-STA (Gao et al., 2017): temporal grounding of a sentence in a video; mIoU and R1@{0.3,0.5,0.7}.

Layouts (any)::

    Charades-STA/                             the original release (jiyanggao/TALL)
      charades_sta_test.txt                   lines "<video> <start> <end>##<sentence>" (3,720)
      Charades_v1_480/<video>.mp4             (or Charades_v1/, videos/)

    Charades-STA/                             the VideoLLaMA3 evaluation file
      charades_annotations_test-random_prompt.json
                                              list of {"question_id", "video", "conversation":
                                              [{"content": question}, ...], "timestamps": [[start, end]]}
      Charades_v1/<video>

    Charades-STA/                             the lmms-eval / VideoChat-Flash evaluation file
      json/temporal_grounding_charades.json   list of {"video": "<id>.mp4", "caption", "timestamp": [s, e]}
      videos/<video>                          (or Charades_v1_480/, Charades_v1/)

Copies of the txt file that add columns after ``<end>`` (e.g. ``3MSZA 24.3 30.4 0##...``) are read the
same way. The answer is read as an interval in seconds from free text (``1.5-3.0 s``, ``from 1.5s to 3s``,
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
CAPTION_JSON_FILES = ("json/temporal_grounding_charades.json", "temporal_grounding_charades.json")
PUBLISHED_COUNT = 3720  # sentence-moment pairs of the test split
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
            samples = self._load_prompt_json(root / JSON_FILE, video_dir)
            what = JSON_FILE
        elif caption_json := first_existing(*(root / name for name in CAPTION_JSON_FILES)):
            samples = self._load_caption_json(caption_json, video_dir)
            what = caption_json.relative_to(root).as_posix()
        elif (root / TXT_FILE).exists():
            samples = self._load_txt(root / TXT_FILE, video_dir)
            what = TXT_FILE
        else:
            raise DatasetError(f"{root}: expected {TXT_FILE}, {JSON_FILE} or {CAPTION_JSON_FILES[0]}")
        if not samples:
            self.report("empty_file", f"{what} holds no usable sentence")
        for sample in samples:
            self.check_media(sample.media[0]["path"], sample.id)
        self.check_count(len(samples), PUBLISHED_COUNT, what)
        return samples

    def _interval(self, start: Any, end: Any, where: str) -> tuple[float, float] | None:
        """The ground-truth interval, or None (reported) when it is not a pair of numbers."""
        try:
            interval = (float(start), float(end))
        except (TypeError, ValueError):
            self.report("malformed_record", f"{where}: interval {start!r}, {end!r} is not numeric; skipped")
            return None
        if interval[1] < interval[0]:
            # Kept: the IoU of any prediction with a reversed interval is 0, as in the official code.
            self.report("bad_interval", f"{where}: end {interval[1]} is before start {interval[0]}; kept")
        return interval

    def _load_prompt_json(self, path: Path, video_dir: Path) -> list[Sample]:
        samples = []
        for index, record in enumerate(read_json(path)):
            try:
                (start, end), question = record["timestamps"][0], record["conversation"][0]["content"]
                video, question_id = record["video"], record["question_id"]
            except (KeyError, IndexError, TypeError, ValueError):
                self.report("malformed_record", f"{path.name}[{index}]: no question / video / timestamps; skipped")
                continue
            interval = self._interval(start, end, f"{path.name}[{index}]")
            if interval is not None:
                samples.append(
                    Sample(
                        id=str(question_id), question=question, answer=interval, media=[video_media(video_dir / video)]
                    )
                )
        return samples

    def _load_caption_json(self, path: Path, video_dir: Path) -> list[Sample]:
        samples = []
        for index, record in enumerate(read_json(path)):
            try:
                (start, end), sentence, video = record["timestamp"], str(record["caption"]), str(record["video"])
            except (KeyError, TypeError, ValueError):
                self.report("malformed_record", f"{path.name}[{index}]: no video / caption / timestamp; skipped")
                continue
            interval = self._interval(start, end, f"{path.name}[{index}]")
            if interval is not None:
                samples.append(
                    self._sentence_sample(f"{Path(video).stem}_{index}", sentence, interval, video_dir / video)
                )
        return samples

    def _load_txt(self, path: Path, video_dir: Path) -> list[Sample]:
        samples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            head, separator, sentence = line.partition("##")
            fields = head.split()
            if not separator or len(fields) < 3:
                self.report("malformed_record", f"{TXT_FILE}:{number + 1}: not '<video> <start> <end>##<sentence>'")
                continue
            interval = self._interval(fields[1], fields[2], f"{TXT_FILE}:{number + 1}")
            if interval is not None:
                video = fields[0]
                samples.append(
                    self._sentence_sample(f"{video}_{number}", sentence, interval, find_video(video_dir, video))
                )
        return samples

    @staticmethod
    def _sentence_sample(sample_id: str, sentence: str, interval: tuple[float, float], video: Path) -> Sample:
        return Sample(
            id=sample_id,
            question=QUERY_TEMPLATE.format(query=sentence.strip().rstrip(".")),
            answer=interval,
            media=[video_media(video)],
            meta={"sentence": sentence.strip()},
        )

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
