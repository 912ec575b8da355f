"""Batch inference over a JSONL file of conversations: ``videollama3 infer`` and its Python API.

Every input row is ``{"id": ..., "conversation": [...]}`` (the processor's conversation format, media
paths relative to the input file's folder or absolute) with optional generation options; every output
row is ``{"id": ..., "answer": ...}`` or ``{"id": ..., "error": ...}``, in input order.

The job works like the evaluation runner (:mod:`videollama3.evaluation.runner`): under ``torchrun`` every
process takes every ``world_size``-th remaining row, answers it in batches (a failing batch is retried row by
row, so one corrupt video fails only its row: :func:`~.predictors.answer_requests`), appends the rows to its
journal ``<output>.rank<r>`` after every batch, and the rows are gathered on rank 0 through a gloo group
(:mod:`videollama3.distributed`). Rank 0
writes the output file once, in input order, so it does not depend on the number of processes.

Resuming: answered rows of the output file and of the journals an interrupted run left (a torn last line
is skipped) are kept; only the other rows run, error rows included.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..distributed import DistEnv, broadcast_object, gather_object, init_distributed, run_checked
from .base import DEFAULT_MAX_NEW_TOKENS, EvaluationError
from .io import iter_jsonl_records
from .predictors import Predictor, Request, Sampling, answer_requests
from .runner import DEFAULT_DIST_TIMEOUT

GENERATION_FIELDS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed")
ROW_FIELDS = ("id", "conversation", *GENERATION_FIELDS)
MAX_SEED = 2**63 - 1
MAX_LISTED_DUPLICATES = 10


class BatchInferenceError(EvaluationError):
    """A batch inference job cannot run as asked (unreadable input, duplicate ids, bad options...)."""


@dataclass(frozen=True)
class GenerationOptions:
    """How one row is decoded: the job's defaults, overridden by the row's own fields.

    Greedy unless ``do_sample``; the sampling fields are ignored when greedy. ``seed`` None: a sampled row
    is seeded from the job's seed and its id, so its answer depends neither on its batch nor on its process.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filtering
    seed: int | None = None

    def __post_init__(self) -> None:
        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value: Any) -> bool:
            return (is_int(value) or isinstance(value, float)) and math.isfinite(value)

        checks = {
            "max_new_tokens": (is_int(self.max_new_tokens) and self.max_new_tokens >= 1, "a positive integer"),
            "do_sample": (isinstance(self.do_sample, bool), "true or false"),
            "temperature": (is_number(self.temperature) and self.temperature > 0, "a number > 0"),
            "top_p": (is_number(self.top_p) and 0 < self.top_p <= 1, "a number in (0, 1]"),
            "top_k": (is_int(self.top_k) and self.top_k >= 0, "an integer >= 0"),
            "seed": (self.seed is None or (is_int(self.seed) and 0 <= self.seed <= MAX_SEED), "an integer >= 0"),
        }
        for name, (valid, expected) in checks.items():
            if not valid:
                raise BatchInferenceError(f"{name} must be {expected}, got {getattr(self, name)!r}")

    def for_row(self, row: dict[str, Any]) -> GenerationOptions:
        """These options overridden by the generation fields ``row`` holds (validated)."""
        return dataclasses.replace(self, **{name: row[name] for name in GENERATION_FIELDS if name in row})

    def sampling(self, job_seed: int, key: str) -> Sampling | None:
        """None when greedy; else the draw of the row with id key ``key`` (see :func:`row_key`)."""
        if not self.do_sample:
            return None
        seed = self.seed if self.seed is not None else zlib.crc32(f"{job_seed}:{key}".encode())
        return Sampling(temperature=float(self.temperature), top_p=float(self.top_p), top_k=self.top_k, seed=seed)


@dataclass
class Row:
    """One non-blank line of the input: the request to answer, or why the line cannot be answered."""

    line: int
    id: str | int | None  # None when the line has no usable id
    request: Request | None = None
    error: str | None = None

    @property
    def key(self) -> str | None:
        return row_key(self.id)


def row_key(row_id: Any) -> str | None:
    """The id as a string key (``"7"`` and ``7`` differ); None for what cannot be an id."""
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
        return None
    return json.dumps(row_id)


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------


def read_rows(path: Path, defaults: GenerationOptions, job_seed: int = 0) -> list[Row]:
    """The rows of ``path``. Malformed lines become error rows naming their line; duplicate ids raise."""
    if not path.exists():
        raise BatchInferenceError(f"input file {path} not found")
    if not path.is_file():
        raise BatchInferenceError(f"input {path} is not a file")
    media_root = str(path.resolve().parent)
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if text.strip():
                    rows.append(_parse_row(text, number, defaults, job_seed, media_root))
    except UnicodeDecodeError as exc:
        raise BatchInferenceError(f"{path}: not UTF-8 text ({exc})") from None
    if not rows:
        raise BatchInferenceError(f"{path} holds no rows (expected one JSON object per line)")
    _refuse_duplicate_ids(path, rows)
    return rows


def _parse_row(text: str, line: int, defaults: GenerationOptions, job_seed: int, media_root: str) -> Row:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(line, None, error=f"line {line}: not valid JSON ({exc})")
    if not isinstance(data, dict):
        return Row(line, None, error=f"line {line}: expected a JSON object, got {type(data).__name__}")
    if "id" not in data:
        return Row(line, None, error=f'line {line}: no "id"')
    if row_key(data["id"]) is None:
        return Row(line, None, error=f'line {line}: "id" must be a string or an integer, got {data["id"]!r:.100}')
    row_id = data["id"]
    unknown = sorted(set(data) - set(ROW_FIELDS))
    if unknown:
        return Row(line, row_id, error=f"line {line}: unknown field(s) {unknown}; known: {list(ROW_FIELDS)}")
    if "conversation" not in data:
        return Row(line, row_id, error=f'line {line}: no "conversation"')
    try:
        options = defaults.for_row(data)
    except BatchInferenceError as exc:
        return Row(line, row_id, error=f"line {line}: {exc}")
    request = Request(
        str(row_id),
        data["conversation"],  # checked by the processor: a malformed one fails its row only
        options.max_new_tokens,
        media_root=media_root,
        sampling=options.sampling(job_seed, row_key(row_id)),
    )
    return Row(line, row_id, request)


def _refuse_duplicate_ids(path: Path, rows: list[Row]) -> None:
    lines_of: dict[str, list[int]] = {}
    for row in rows:
        if row.key is not None:
            lines_of.setdefault(row.key, []).append(row.line)
    duplicates = [(key, lines) for key, lines in lines_of.items() if len(lines) > 1]
    if duplicates:
        listed = "; ".join(
            f"id {key} on lines {', '.join(map(str, lines))}" for key, lines in duplicates[:MAX_LISTED_DUPLICATES]
        )
        more = (
            f" (and {len(duplicates) - MAX_LISTED_DUPLICATES} more)" if len(duplicates) > MAX_LISTED_DUPLICATES else ""
        )
        raise BatchInferenceError(f"{path}: duplicate ids, every row needs its own: {listed}{more}")


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def journal_paths(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.rank*"))


def journal_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}.rank{rank}")


ROW_START = '{"id": '  # how every line this job writes begins (json.dumps of a dict whose first key is "id")


def check_replaceable(output: Path) -> None:
    """Refuse to resume into, and later replace, a file that is not an output of this job: every line must
    be a row, except a last one torn by a crash mid-write (then it is the beginning of a row)."""
    if not output.exists():
        return
    previous: tuple[int, str] | None = None
    with open(output, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                if previous is not None:
                    _check_row(output, *previous, last=False)
                previous = (number, line.rstrip("\n"))
    if previous is not None:
        _check_row(output, *previous, last=True)


def _check_row(output: Path, number: int, line: str, last: bool) -> None:
    try:
        record = json.loads(line)
        is_row = isinstance(record, dict) and "id" in record
    except json.JSONDecodeError:
        is_row = last and (line.startswith(ROW_START) or ROW_START.startswith(line))
    if not is_row:
        raise BatchInferenceError(
            f'{output} is not an output of videollama3 infer (line {number} is not a JSON row with an "id"): '
            "give another --output, or --overwrite to replace it"
        )


def read_answers(output: Path) -> dict[str, dict[str, Any]]:
    """Answered rows of the output file and of an interrupted run's journals, by id key."""
    answers = {}
    for path in [output, *journal_paths(output)]:
        for record in iter_jsonl_records(path):
            key = row_key(record.get("id")) if isinstance(record, dict) else None
            if key is not None and isinstance(record.get("answer"), str):
                answers[key] = record
    return answers


def _output_record(row: Row, answers: dict[str, dict[str, Any]], errors: dict[str, str]) -> dict[str, Any]:
    if row.key is None:
        return {"id": None, "line": row.line, "error": row.error}
    if row.error is not None:
        return {"id": row.id, "error": row.error}
    if row.key in answers:
        return {"id": row.id, "answer": answers[row.key]["answer"]}
    return {"id": row.id, "error": errors.get(row.key, f"line {row.line}: no answer")}


def write_output(output: Path, rows: list[Row], answers: dict[str, dict[str, Any]], errors: dict[str, str]) -> None:
    """The output file, written once: the rows in input order, then earlier answers to ids the input no
    longer holds (kept, not silently discarded). Journals are removed once it is in place."""
    tmp = output.with_name(output.name + ".tmp")
    input_keys = {row.key for row in rows}
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(_output_record(row, answers, errors), ensure_ascii=False) + "\n")
        for key, record in answers.items():
            if key not in input_keys:
                f.write(json.dumps({"id": record["id"], "answer": record["answer"]}, ensure_ascii=False) + "\n")
    os.replace(tmp, output)
    for journal in journal_paths(output):
        journal.unlink()


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


def _answer_share(
    rows: list[Row],
    remaining: list[int],
    predictor: Predictor,
    batch_size: int,
    output: Path,
    env: DistEnv,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Answer this rank's share of ``remaining``; returns its records (also journaled after every batch)."""
    from tqdm.auto import tqdm

    share = remaining[env.rank :: env.world_size]
    output.parent.mkdir(parents=True, exist_ok=True)  # rank 0 made it, unless the output is not shared
    records = []
    progress = tqdm(
        total=len(share),
        desc="infer" + (f" [rank 0 of {env.world_size}]" if env.distributed else ""),
        unit="row",
        disable=not show_progress or env.rank != 0,
        dynamic_ncols=True,
    )
    with open(journal_path(output, env.rank), "a", encoding="utf-8") as journal:
        for start in range(0, len(share), batch_size):
            batch = [rows[i] for i in share[start : start + batch_size]]
            results = answer_requests(predictor, [row.request for row in batch])
            for row, (answer, error) in zip(batch, results):
                if error is None:
                    record = {"id": row.id, "answer": answer}
                else:
                    record = {"id": row.id, "error": f"line {row.line}: {error}"}
                records.append(record)
                journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
            progress.update(len(batch))
    progress.close()
    return records


def run_batch_inference(
    input_path: str | Path,
    output_path: str | Path,
    predictor_factory: Callable[[], Predictor],
    *,
    defaults: GenerationOptions | None = None,
    batch_size: int = 1,
    seed: int = 0,
    overwrite: bool = False,
    dist_timeout: float = DEFAULT_DIST_TIMEOUT,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Answer every row of ``input_path`` into ``output_path``; returns counts on rank 0 ({} elsewhere).

    Args:
        predictor_factory: called once per process, only when rows are left to answer.
        defaults: generation options of rows that do not set them (greedy, 2048 new tokens).
        batch_size: rows per ``generate`` call.
        seed: seeds the sampled rows that carry no ``seed`` of their own (with their id).
        overwrite: discard earlier answers instead of resuming.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    defaults = defaults or GenerationOptions()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BatchInferenceError(f"batch_size must be a positive integer, got {batch_size!r}")
    if output_path.is_dir():
        raise BatchInferenceError(f"output {output_path} is a folder (expected a .jsonl file)")
    if output_path.exists() and input_path.exists() and output_path.samefile(input_path):
        raise BatchInferenceError(f"the output {output_path} is the input file: give another --output")
    env = init_distributed(dist_timeout, objects_only=True)
    try:
        return _run(
            input_path, output_path, predictor_factory, defaults, batch_size, seed, overwrite, env, show_progress
        )
    finally:
        env.close()


def _run(input_path, output_path, predictor_factory, defaults, batch_size, seed, overwrite, env, show_progress):
    # 1. Every rank reads the input (it holds only ids, texts and media paths); rank 0 finds what is left.
    rows: list[Row] = run_checked(
        env, f"reading {input_path}", lambda: read_rows(input_path, defaults, seed), EvaluationError
    )

    def plan() -> list[int]:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for stale in [output_path, *journal_paths(output_path)]:
                stale.unlink(missing_ok=True)
        check_replaceable(output_path)
        answered = read_answers(output_path)
        return [i for i, row in enumerate(rows) if row.request is not None and row.key not in answered]

    remaining = broadcast_object(
        run_checked(env, f"reading earlier answers in {output_path}", plan if env.rank == 0 else list, EvaluationError),
        env,
    )
    runnable = sum(row.request is not None for row in rows)
    if env.rank == 0 and len(remaining) < runnable:
        print(f"{output_path}: resuming, {len(remaining)} of {runnable} rows left", file=sys.stderr)

    # 2. Answer the remaining rows, each rank its share, and gather them on rank 0.
    records: list[dict[str, Any]] = []
    if remaining:
        predictor = run_checked(env, "loading the model", predictor_factory, EvaluationError)
        records = run_checked(
            env,
            "answering",
            lambda: _answer_share(rows, remaining, predictor, batch_size, output_path, env, show_progress),
            EvaluationError,
        )
    gathered = gather_object(records, env)

    # 3. Rank 0 merges them with the earlier answers (journals included) and writes the output in input
    # order; then every rank drops its journal (on nodes that do not share rank 0's filesystem too).
    def merge() -> dict[str, int]:
        answers = read_answers(output_path)
        errors: dict[str, str] = {}
        for record in (record for per_rank in gathered for record in per_rank):
            if "answer" in record:
                answers[row_key(record["id"])] = record
            else:
                errors[row_key(record["id"])] = record["error"]
        write_output(output_path, rows, answers, errors)
        counts = {"rows": len(rows), "answered": sum(row.key in answers for row in rows if row.error is None)}
        return {**counts, "errors": counts["rows"] - counts["answered"]}

    counts = run_checked(env, f"writing {output_path}", merge if env.rank == 0 else dict, EvaluationError)
    journal_path(output_path, env.rank).unlink(missing_ok=True)
    return counts
