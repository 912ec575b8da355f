"""Reading benchmark files: JSON / JSONL / CSV / TSV / Parquet, SubRip subtitles, embedded images.

Parquet needs ``pyarrow`` (imported only when a parquet file is read, with a clear error if absent).
Images stored inside parquet files (MMMU, RealWorldQA) are not held in memory: a sample keeps a
:class:`ParquetImage` reference and the image is decoded when its conversation is built, one row group
at a time (a small cache makes the sequential access of a shard cheap).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import DatasetError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".MP4")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise DatasetError(f"missing annotation file {path}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path}:{number}: not valid JSON ({exc})") from exc
    except FileNotFoundError as exc:
        raise DatasetError(f"missing annotation file {path}") from exc
    return rows


def read_csv(path: str | Path, delimiter: str = ",") -> list[dict[str, str]]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            # TSV files of VLMEvalKit hold base64 images far larger than csv's default field limit.
            csv.field_size_limit(1 << 30)
            return list(csv.DictReader(f, delimiter=delimiter))
    except FileNotFoundError as exc:
        raise DatasetError(f"missing annotation file {path}") from exc


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DatasetError("reading parquet files needs pyarrow: pip install pyarrow") from exc
    return pq


def read_parquet(path: str | Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a parquet file as dicts (binary image columns are better left out and read lazily)."""
    pq = _pyarrow_parquet()
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing annotation file {path}")
    return pq.read_table(path, columns=columns).to_pylist()


def parquet_columns(path: str | Path) -> list[str]:
    return list(_pyarrow_parquet().ParquetFile(path).schema_arrow.names)


def first_existing(*candidates: Path) -> Path | None:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def require_file(folder: Path, *names: str) -> Path:
    """The first of ``names`` present in ``folder`` (a DatasetError naming them all otherwise)."""
    found = first_existing(*(folder / name for name in names))
    if found is None:
        raise DatasetError(f"{folder}: expected one of {', '.join(names)}")
    return found


def find_video(folder: Path, stem: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> Path:
    """``folder/stem.<ext>`` for the first extension that exists (datasets mix containers)."""
    for ext in extensions:
        candidate = folder / f"{stem}{ext}"
        if candidate.exists():
            return candidate
    # Report the usual name; the sample then fails with a clear "video not found" and is counted.
    return folder / f"{stem}.mp4"


# --------------------------------------------------------------------------------------------------
# Images inside parquet files
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _row_group_index(path: str) -> tuple[int, ...]:
    """Cumulative row counts of the row groups of ``path``."""
    metadata = _pyarrow_parquet().ParquetFile(path).metadata
    bounds, total = [], 0
    for i in range(metadata.num_row_groups):
        total += metadata.row_group(i).num_rows
        bounds.append(total)
    return tuple(bounds)


@functools.lru_cache(maxsize=4)
def _row_group(path: str, group: int, column: str) -> list[Any]:
    table = _pyarrow_parquet().ParquetFile(path).read_row_group(group, columns=[column])
    return table.column(column).to_pylist()


@dataclass(frozen=True)
class ParquetImage:
    """An image stored in row ``row`` of ``column`` of a parquet file (HF ``Image`` feature or bytes).

    Calling it returns the decoded RGB PIL image.
    """

    path: str
    row: int
    column: str

    def __call__(self):
        from PIL import Image

        bounds = _row_group_index(self.path)
        group = next(i for i, bound in enumerate(bounds) if self.row < bound)
        offset = self.row - (bounds[group - 1] if group else 0)
        value = _row_group(self.path, group, self.column)[offset]
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            raise DatasetError(f"{self.path}: row {self.row} has no image bytes in column {self.column!r}")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB")


def decode_base64_image(data: str):
    """A PIL image from a base64 string (VLMEvalKit TSV files)."""
    import base64

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image.convert("RGB")


# --------------------------------------------------------------------------------------------------
# Subtitles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subtitle:
    start: float  # seconds
    end: float
    text: str


_SRT_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})")
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


def _srt_seconds(match: re.Match) -> float:
    h, m, s, ms = match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_srt(text: str) -> list[Subtitle]:
    """SubRip cues in file order; lines of a cue are joined with spaces, formatting tags removed.

    (The official code reads subtitles with pysubs2 and replaces its line breaks by spaces: same text.)
    """
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")):
        lines = [line for line in block.strip().split("\n") if line.strip()]
        for i, line in enumerate(lines):
            if "-->" in line:
                times = list(_SRT_TIME.finditer(line))
                if len(times) == 2:
                    body = " ".join(_TAG.sub("", part).strip() for part in lines[i + 1 :])
                    cues.append(Subtitle(_srt_seconds(times[0]), _srt_seconds(times[1]), body.strip()))
                break
    return cues


def read_srt(path: str | Path) -> list[Subtitle]:
    return parse_srt(Path(path).read_text(encoding="utf-8", errors="replace"))


def iter_jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, skipping a torn last line (a run killed mid-write)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
