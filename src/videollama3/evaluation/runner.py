"""Running benchmarks: sharding over processes, batching, resuming, gathering, scoring, reporting.

An :class:`EvalJob` is one model on several benchmarks; :func:`evaluate` runs it. Under ``torchrun``
every process takes every ``world_size``-th remaining sample (deterministic), answers it, appends the
record to its journal ``<output>/<benchmark>/predictions.rank<r>.jsonl`` (flushed per batch, so a killed
run loses at most a batch), and the records are gathered on rank 0 through a gloo process group (no
shared filesystem needed for the gather; :mod:`videollama3.distributed`). Rank 0 merges them in dataset
order into ``predictions.jsonl``, scores, writes ``scores.json`` and prints the summary table (the files:
:mod:`.results`).

Failure handling, so that no process is ever left waiting on another:

- an exception while answering one sample (unreadable media, out of memory...) is recorded as a failed
  prediction (counted, scored as wrong, retried on resume) and the run goes on;
- an exception outside a sample (bad data folder, model that does not load) is caught on its rank and
  every rank learns of it at the next synchronisation point (an ``all_gather`` of statuses), then all
  raise together;
- every collective has a timeout (``--dist-timeout``), so a rank that died without a word (killed by
  the OOM killer) makes the others fail instead of hang (torchrun also tears the group down).

Resuming: records without an error in ``predictions.jsonl`` and in journals left by an interrupted run
are kept; only the other samples run. A run refuses to resume predictions made with other settings
(``run.json``) unless ``--overwrite`` is given.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..distributed import DistEnv, broadcast_object, gather_object, init_distributed, run_checked
from .base import Benchmark, EvalSettings, EvaluationError, Prediction, Sample, missing_media
from .predictors import Predictor, Request, answer_requests, format_error
from .registry import get_benchmark
from .results import (
    JOURNALS,
    PREDICTIONS,
    RUN_INFO,
    SCORES,
    format_summary,
    journal_path,
    keep_record,
    problems_report,
    read_records,
    run_fingerprint,
    update_summary,
    versions,
    write_json,
    write_predictions,
)

logger = logging.getLogger(__name__)

DEFAULT_DIST_TIMEOUT = 4 * 3600  # seconds; ranks that finish early wait this long for the slowest one


@dataclass
class EvalJob:
    """One model on several benchmarks: what :func:`evaluate` runs (``videollama3 eval`` builds it).

    Attributes:
        benchmarks: registered names (see :func:`videollama3.evaluation.available_benchmarks`).
        data_root: a dataset folder, a folder holding one folder per benchmark, or ``{name: folder}``
            (key ``""`` for the default).
        output: results folder; each benchmark writes ``<output>/<name>/``.
        settings: the official settings by default.
        predictor_factory: called once (on every rank) when there is something to answer.
        model_name: recorded in the results (and checked on resume).
        limit: only the first ``limit`` samples of each benchmark (in load order).
        overwrite: discard earlier predictions instead of resuming.
        rescore: score the predictions on disk without running anything.
        judge: the LLM judge for benchmarks that require one.
        strict: any data problem a reader reports (empty file, missing media...) is an error instead
            of being recorded in the results.
        dist_timeout: seconds a process waits for the others in a collective.
        show_progress: progress bars; print_summary: print the summary table at the end (rank 0).
    """

    benchmarks: list[str]
    data_root: str | Path | dict[str, str]
    output: str | Path
    settings: EvalSettings = field(default_factory=EvalSettings)
    predictor_factory: Callable[[], Predictor] | None = None
    _: KW_ONLY
    model_name: str | None = None
    limit: int | None = None
    overwrite: bool = False
    rescore: bool = False
    judge: Any = None
    strict: bool = False
    dist_timeout: float = DEFAULT_DIST_TIMEOUT
    show_progress: bool = True
    print_summary: bool = True

    def __post_init__(self) -> None:
        self.settings = self.settings or EvalSettings()
        self.output = Path(self.output)
        if self.limit is not None and self.limit < 1:
            raise EvaluationError(f"--limit must be >= 1, got {self.limit}")
        if not self.benchmarks:
            raise EvaluationError("no benchmark given")


@dataclass
class BenchmarkRun:
    """One benchmark of a job: its samples, results folder and what is left to answer."""

    name: str
    benchmark: Benchmark
    samples: list[Sample]
    folder: Path
    data_root: Path
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record (rank 0)
    remaining: list[int] = field(default_factory=list)  # indices into samples still to answer
    new_records: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Loading a benchmark
# --------------------------------------------------------------------------------------------------


def resolve_data_root(
    data_root: str | Path | dict[str, str], name: str, benchmark: Benchmark, several: bool = False
) -> Path:
    """The dataset folder of ``name``.

    An explicit ``{name: folder}`` entry wins. Otherwise, with one benchmark the folder given is the
    dataset; with several it holds one folder per benchmark, named like the benchmark (``mvbench``) or
    like its dataset (``MVBench``).
    """
    if isinstance(data_root, dict):
        if name in data_root:
            return Path(data_root[name])
        if "" not in data_root:
            raise EvaluationError(f"no --data-root for {name} (give {name}=DIR or a default DIR)")
        data_root = data_root[""]
    root = Path(data_root)
    if not several:
        return root
    candidates = [root / name] + ([root / benchmark.folder] if benchmark.folder else [])
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise EvaluationError(
        f"{name}: none of {', '.join(str(c) for c in candidates)} exists (with several benchmarks, --data-root "
        f"holds one folder per benchmark; or give {name}=DIR)"
    )


def load_benchmark(name: str, benchmark: Benchmark, root: Path, strict: bool = False) -> list[Sample]:
    """``benchmark.load(root)`` with the checks every run makes: unique ids, some samples, and the data
    problems the reader reported (``benchmark.problems``; with ``strict`` any of them is an error)."""
    benchmark.problems.clear()
    samples = benchmark.load(root)
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise EvaluationError(f"{name}: duplicate sample ids in {root}")
    if strict and benchmark.problems:
        report = problems_report(benchmark.problems)
        counts = ", ".join(f"{kind}={n}" for kind, n in report["counts"].items())
        details = "; ".join(report["details"][:5])
        raise EvaluationError(
            f"{name}: {len(benchmark.problems)} data problems in {root} (--strict): {counts}: {details}"
        )
    if not samples:
        raise EvaluationError(f"{name}: no samples found in {root}")
    return samples


# --------------------------------------------------------------------------------------------------
# The job, step by step
# --------------------------------------------------------------------------------------------------


def evaluate(job: EvalJob) -> dict[str, dict[str, Any]]:
    """Run ``job``; returns ``{benchmark: scores}`` on rank 0 ({} elsewhere)."""
    env = init_distributed(job.dist_timeout, objects_only=True)
    try:
        # Each rank reads the annotations (they are small; media stay on disk).
        runs: list[BenchmarkRun] = run_checked(env, "loading the benchmarks", lambda: _load(job), EvaluationError)
        _plan(job, runs, env)
        _answer_remaining(job, runs, env)
        return _report(job, runs, env.world_size) if env.rank == 0 else {}
    finally:
        env.close()


def _load(job: EvalJob) -> list[BenchmarkRun]:
    runs = []
    names = job.benchmarks
    for name in dict.fromkeys(names):
        benchmark = get_benchmark(name)
        if benchmark.requires_judge and job.judge is None:
            raise EvaluationError(f"{name} is scored by an LLM judge: give --judge-endpoint URL")
        benchmark.judge = job.judge
        root = resolve_data_root(job.data_root, name, benchmark, several=len(set(names)) > 1)
        if not root.is_dir():
            raise EvaluationError(f"{name}: data root {root} is not a folder")
        samples = load_benchmark(name, benchmark, root, job.strict)
        samples = samples[: job.limit] if job.limit else samples
        runs.append(BenchmarkRun(name, benchmark, samples, job.output / name, root))
    return runs


def _plan(job: EvalJob, runs: list[BenchmarkRun], env: DistEnv) -> None:
    """Rank 0 decides what is left to do (earlier records, settings check) and tells the others."""

    def plan() -> dict[str, list[int]]:
        remaining = {}
        for run in runs:
            run.folder.mkdir(parents=True, exist_ok=True)
            fingerprint = run_fingerprint(job.model_name, job.settings, run.name)
            info_path = run.folder / RUN_INFO
            if job.overwrite and not job.rescore:
                for stale in [run.folder / PREDICTIONS, *run.folder.glob(JOURNALS)]:
                    stale.unlink(missing_ok=True)
            elif info_path.exists() and not job.rescore:
                previous = json.loads(info_path.read_text())
                if previous != fingerprint:
                    raise EvaluationError(
                        f"{run.folder} holds predictions made with other settings or another model "
                        f"({previous} vs {fingerprint}): use --overwrite or another --output"
                    )
            if not job.rescore:
                write_json(info_path, fingerprint)
            run.done = read_records(run.folder)
            ok = {k for k, r in run.done.items() if r.get("error") is None}
            remaining[run.name] = [] if job.rescore else [i for i, s in enumerate(run.samples) if s.id not in ok]
        return remaining

    remaining = run_checked(env, "reading earlier predictions", plan if env.rank == 0 else dict, EvaluationError)
    remaining = broadcast_object(remaining, env)
    for run in runs:
        run.remaining = remaining[run.name]
        if env.rank == 0 and run.remaining != list(range(len(run.samples))) and not job.rescore:
            print(f"{run.name}: resuming, {len(run.remaining)} of {len(run.samples)} samples left", file=sys.stderr)


def _answer_remaining(job: EvalJob, runs: list[BenchmarkRun], env: DistEnv) -> None:
    """Answer the remaining samples, benchmark after benchmark, gathering each on rank 0."""
    if not any(run.remaining for run in runs):
        return
    if job.predictor_factory is None:
        raise EvaluationError("samples are left to answer but no model / predictor was given")
    predictor = run_checked(env, "loading the model", job.predictor_factory, EvaluationError)
    for run in runs:
        if not run.remaining:
            continue
        records = run_checked(
            env,
            f"running {run.name}",
            lambda run=run: _answer_share(run, predictor, job.settings, env, job.show_progress),
            EvaluationError,
        )
        gathered = gather_object(records, env)
        if env.rank == 0:
            run.new_records = [record for per_rank in gathered for record in per_rank]


def _answer_share(
    run: BenchmarkRun,
    predictor: Predictor,
    settings: EvalSettings,
    env: DistEnv,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Answer this rank's share of ``run.remaining``; returns the new records (also journaled)."""
    from tqdm.auto import tqdm

    shard = run.remaining[env.rank :: env.world_size]
    run.folder.mkdir(parents=True, exist_ok=True)  # rank 0 made it, unless the output is not shared
    records: list[dict[str, Any]] = []
    progress = tqdm(
        total=len(shard),
        desc=f"{run.name}" + (f" [rank {env.rank}]" if env.distributed else ""),
        position=env.rank,
        disable=not show_progress,
        dynamic_ncols=True,
        leave=True,
    )
    with open(journal_path(run.folder, env.rank), "a", encoding="utf-8") as journal:
        for start in range(0, len(shard), settings.batch_size):
            batch = [run.samples[i] for i in shard[start : start + settings.batch_size]]
            began = time.perf_counter()
            requests, results = [], {}
            for sample in batch:
                try:
                    missing = missing_media(sample)
                    if missing:
                        raise EvaluationError("; ".join(missing))
                    conversation = run.benchmark.build_conversation(sample, settings)
                    requests.append(Request(sample.id, conversation, run.benchmark.max_new_tokens(sample, settings)))
                except Exception as exc:  # a sample whose media or annotations cannot be used
                    logger.warning("sample %s failed: %s", sample.id, format_error(exc))
                    results[sample.id] = (None, format_error(exc))
            for request, result in zip(requests, answer_requests(predictor, requests)):
                results[request.id] = result
            seconds = (time.perf_counter() - began) / max(1, len(batch))
            for sample in batch:
                response, error = results[sample.id]
                record = {
                    "id": sample.id,
                    "response": response,
                    "error": error,
                    "rank": env.rank,
                    "seconds": round(seconds, 3),
                }
                records.append(record)
                journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
            progress.update(len(batch))
    progress.close()
    return records


def _report(job: EvalJob, runs: list[BenchmarkRun], world_size: int) -> dict[str, dict[str, Any]]:
    """Rank 0: merge, score, write, report."""
    results: dict[str, dict[str, Any]] = {}
    for run in runs:
        records = dict(run.done)
        for record in run.new_records:
            keep_record(records, record["id"], record)
        metrics, predictions = _score(run, records)
        submission = run.benchmark.write_submission(predictions, run.folder)
        scores = {
            "benchmark": run.name,
            "primary_metric": run.benchmark.primary_metric,
            "metrics": metrics,
            "model": job.model_name,
            "data_root": str(run.data_root),
            "settings": job.settings.to_dict(),
            "limit": job.limit,
            "world_size": world_size,
            "submission": str(submission) if submission else None,
            "data_problems": problems_report(run.benchmark.problems),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
        }
        write_json(run.folder / SCORES, scores)
        write_predictions(run.folder, records, predictions)
        results[run.name] = scores
    update_summary(job.output, results)
    if job.print_summary:
        print(format_summary(results))
    return results


def _score(run: BenchmarkRun, records: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[Prediction]]:
    predictions = []
    for sample in run.samples:
        record = records.get(sample.id)
        if record is None:
            predictions.append(Prediction(sample, None, "no prediction"))
        else:
            predictions.append(Prediction(sample, record.get("response"), record.get("error")))
    return run.benchmark.score(predictions), predictions
