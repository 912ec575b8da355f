"""Running benchmarks: sharding over processes, batching, resuming, gathering, scoring, reporting.

One call of :func:`evaluate` runs several benchmarks with one model. Under ``torchrun`` every process
takes every ``world_size``-th remaining sample (deterministic), answers it, appends the record to its
journal ``<output>/<benchmark>/predictions.rank<r>.jsonl`` (flushed per batch, so a killed run loses at
most a batch), and the records are gathered on rank 0 through a gloo process group (no shared
filesystem needed for the gather). Rank 0 merges them in dataset order into ``predictions.jsonl``,
scores, writes ``scores.json`` and prints the summary table.

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
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .base import Benchmark, DataProblem, EvalSettings, EvaluationError, Prediction, Sample, missing_media
from .io import iter_jsonl_records
from .predictors import Predictor, Request
from .registry import get_benchmark

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
SCORES = "scores.json"
RUN_INFO = "run.json"
SUMMARY = "summary.json"
DEFAULT_DIST_TIMEOUT = 4 * 3600  # seconds; ranks that finish early wait this long for the slowest one
MAX_PROBLEM_DETAILS = 50  # details kept in scores.json; the counts cover all of them


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


class Distributed:
    """Rank, world size and object collectives over a gloo group (CPU objects; NCCL is not needed).

    Without ``WORLD_SIZE`` > 1 in the environment everything is local and collectives are identities.
    """

    def __init__(self, timeout_s: float = DEFAULT_DIST_TIMEOUT) -> None:
        self.rank = 0
        self.world_size = 1
        self.group = None
        self.initialized_here = False
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        import torch.distributed as dist

        self._dist = dist
        timeout = timedelta(seconds=timeout_s)
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timeout)
            self.initialized_here = True
        elif dist.get_backend() != "gloo":
            self.group = dist.new_group(backend="gloo", timeout=timeout)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        """``obj`` of every rank on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.rank == 0 else None]
        self._dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def check(self, error: BaseException | None, what: str) -> None:
        """Share whether this rank failed ``what``; raise on every rank if any did."""
        message = None if error is None else f"{type(error).__name__}: {error}"
        statuses = self.all_gather(message)
        failed = [(rank, m) for rank, m in enumerate(statuses) if m is not None]
        if failed:
            if error is not None and self.world_size == 1:
                raise error
            details = "; ".join(f"rank {rank}: {m}" for rank, m in failed)
            raise EvaluationError(
                f"{what} failed on {len(failed)} of {self.world_size} processes: {details}"
            ) from error

    def close(self) -> None:
        if self.initialized_here:
            self._dist.destroy_process_group()


def _run_checked(dist: Distributed, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on this rank, then fail on all ranks together if it failed on any."""
    error, result = None, None
    try:
        result = fn()
    except Exception as exc:  # shared with the other ranks below, then raised
        if dist.active:
            traceback.print_exc(file=sys.stderr)
        error = exc
    dist.check(error, what)
    return result


# --------------------------------------------------------------------------------------------------
# One benchmark
# --------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkRun:
    name: str
    benchmark: Benchmark
    samples: list[Sample]
    folder: Path
    data_root: Path
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record (rank 0)
    remaining: list[int] = field(default_factory=list)  # indices into samples still to answer
    new_records: list[dict[str, Any]] = field(default_factory=list)


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


def _read_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Predictions already made: the merged file, then journals of an interrupted run (later wins,
    except that a failed record never replaces a successful one)."""
    records: dict[str, dict[str, Any]] = {}
    for path in [folder / PREDICTIONS, *sorted(folder.glob("predictions.rank*.jsonl"))]:
        for record in iter_jsonl_records(path):
            if "id" not in record:
                continue
            key = str(record["id"])
            if record.get("error") is None or key not in records or records[key].get("error") is not None:
                records[key] = record
    return records


def _run_fingerprint(model: str | None, settings: EvalSettings, benchmark: str) -> dict[str, Any]:
    # batch_size is left out: it does not change greedy answers (beyond float noise) and may vary on resume.
    fingerprint = {k: v for k, v in settings.to_dict().items() if k != "batch_size"}
    return {"benchmark": benchmark, "model": model, "settings": fingerprint}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _format_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _answer(predictor: Predictor, requests: list[Request]) -> list[tuple[str | None, str | None]]:
    """(response, error) per request. A failing batch is retried one sample at a time, so one bad
    sample does not fail its batch mates."""
    if not requests:
        return []
    try:
        responses = predictor.generate(requests)
        if len(responses) != len(requests):
            raise EvaluationError(f"the predictor returned {len(responses)} responses for {len(requests)} requests")
        return [(str(r), None) for r in responses]
    except Exception as exc:
        _free_accelerator_memory()
        if len(requests) == 1:
            logger.warning("sample %s failed: %s", requests[0].id, _format_error(exc))
            return [(None, _format_error(exc))]
    return [result for request in requests for result in _answer(predictor, [request])]


def _free_accelerator_memory() -> None:
    # After an out-of-memory error the cached blocks of the failed batch would stay reserved.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# Public names for other jobs built on the same machinery (videollama3.evaluation.batch_inference).
run_checked = _run_checked
answer_requests = _answer


def _infer(
    run: BenchmarkRun,
    predictor: Predictor,
    settings: EvalSettings,
    dist: Distributed,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Answer this rank's share of ``run.remaining``; returns the new records (also journaled)."""
    from tqdm.auto import tqdm

    shard = run.remaining[dist.rank :: dist.world_size]
    run.folder.mkdir(parents=True, exist_ok=True)  # rank 0 made it, unless the output is not shared
    journal_path = run.folder / f"predictions.rank{dist.rank}.jsonl"
    records: list[dict[str, Any]] = []
    progress = tqdm(
        total=len(shard),
        desc=f"{run.name}" + (f" [rank {dist.rank}]" if dist.active else ""),
        position=dist.rank,
        disable=not show_progress,
        dynamic_ncols=True,
        leave=True,
    )
    with open(journal_path, "a", encoding="utf-8") as journal:
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
                    logger.warning("sample %s failed: %s", sample.id, _format_error(exc))
                    results[sample.id] = (None, _format_error(exc))
            for request, result in zip(requests, _answer(predictor, requests)):
                results[request.id] = result
            seconds = (time.perf_counter() - began) / max(1, len(batch))
            for sample in batch:
                response, error = results[sample.id]
                record = {
                    "id": sample.id,
                    "response": response,
                    "error": error,
                    "rank": dist.rank,
                    "seconds": round(seconds, 3),
                }
                records.append(record)
                journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
            progress.update(len(batch))
    progress.close()
    return records


def _score(run: BenchmarkRun, records: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[Prediction]]:
    predictions = []
    for sample in run.samples:
        record = records.get(sample.id)
        if record is None:
            predictions.append(Prediction(sample, None, "no prediction"))
        else:
            predictions.append(Prediction(sample, record.get("response"), record.get("error")))
    return run.benchmark.score(predictions), predictions


def _write_predictions(run: BenchmarkRun, records: dict[str, dict[str, Any]], predictions: list[Prediction]) -> None:
    """The merged file: the current selection in dataset order with what scoring read, then any other
    records kept from earlier runs (a --limit run does not discard earlier work)."""
    path = run.folder / PREDICTIONS
    tmp = path.with_suffix(".jsonl.tmp")
    selected = set()
    with open(tmp, "w", encoding="utf-8") as f:
        for p in predictions:
            selected.add(p.id)
            record = {
                "id": p.id,
                "response": p.response,
                "error": p.error,
                "extracted": p.extracted,
                "correct": p.correct,
                "score": p.score,
                "answer": p.sample.answer,
                "category": p.sample.category,
            }
            if p.info:
                record["info"] = p.info
            raw = records.get(p.id, {})
            for key in ("rank", "seconds"):
                if key in raw:
                    record[key] = raw[key]
            f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
        for key, record in records.items():
            if key not in selected:
                f.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
    os.replace(tmp, path)
    for journal in run.folder.glob("predictions.rank*.jsonl"):
        journal.unlink()


def problems_report(problems: list[DataProblem]) -> dict[str, Any]:
    """The data problems of a load as results JSON: counts per kind and the first details."""
    kinds: dict[str, int] = {}
    for problem in problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    return {
        "counts": dict(sorted(kinds.items())),
        "details": [f"{p.kind}: {p.detail}" for p in problems[:MAX_PROBLEM_DETAILS]],
    }


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
# Entry point
# --------------------------------------------------------------------------------------------------


def evaluate(
    benchmarks: list[str],
    data_root: str | Path | dict[str, str],
    output: str | Path,
    settings: EvalSettings | None = None,
    predictor_factory: Callable[[], Predictor] | None = None,
    *,
    model_name: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    rescore: bool = False,
    judge: Any = None,
    dist_timeout: float = DEFAULT_DIST_TIMEOUT,
    show_progress: bool = True,
    print_summary: bool = True,
    strict: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluate one model on ``benchmarks``; returns ``{benchmark: scores}`` on rank 0 ({} elsewhere).

    Args:
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
    """
    settings = settings or EvalSettings()
    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be >= 1, got {limit}")
    if not benchmarks:
        raise EvaluationError("no benchmark given")
    output = Path(output)
    dist = Distributed(dist_timeout)
    try:
        return _evaluate(
            benchmarks,
            data_root,
            output,
            settings,
            predictor_factory,
            dist,
            model_name,
            limit,
            overwrite,
            rescore,
            judge,
            show_progress,
            print_summary,
            strict,
        )
    finally:
        dist.close()


def _evaluate(
    names,
    data_root,
    output,
    settings,
    predictor_factory,
    dist,
    model_name,
    limit,
    overwrite,
    rescore,
    judge,
    show_progress,
    print_summary,
    strict=False,
) -> dict[str, dict[str, Any]]:
    # 1. Load every benchmark (each rank reads the annotations: they are small; media stay on disk).
    def prepare() -> list[BenchmarkRun]:
        runs = []
        for name in dict.fromkeys(names):
            benchmark = get_benchmark(name)
            if benchmark.requires_judge and judge is None:
                raise EvaluationError(f"{name} is scored by an LLM judge: give --judge-endpoint URL")
            benchmark.judge = judge
            root = resolve_data_root(data_root, name, benchmark, several=len(set(names)) > 1)
            if not root.is_dir():
                raise EvaluationError(f"{name}: data root {root} is not a folder")
            samples = load_benchmark(name, benchmark, root, strict)
            samples = samples[:limit] if limit else samples
            runs.append(BenchmarkRun(name, benchmark, samples, output / name, root))
        return runs

    runs: list[BenchmarkRun] = _run_checked(dist, "loading the benchmarks", prepare)

    # 2. Rank 0 decides what is left to do (earlier records, settings check) and tells the others.
    def plan() -> dict[str, list[int]]:
        remaining = {}
        for run in runs:
            run.folder.mkdir(parents=True, exist_ok=True)
            fingerprint = _run_fingerprint(model_name, settings, run.name)
            info_path = run.folder / RUN_INFO
            if overwrite and not rescore:
                for stale in [run.folder / PREDICTIONS, *run.folder.glob("predictions.rank*.jsonl")]:
                    stale.unlink(missing_ok=True)
            elif info_path.exists() and not rescore:
                previous = json.loads(info_path.read_text())
                if previous != fingerprint:
                    raise EvaluationError(
                        f"{run.folder} holds predictions made with other settings or another model "
                        f"({previous} vs {fingerprint}): use --overwrite or another --output"
                    )
            if not rescore:
                _write_json(info_path, fingerprint)
            run.done = _read_records(run.folder)
            ok = {k for k, r in run.done.items() if r.get("error") is None}
            remaining[run.name] = [] if rescore else [i for i, s in enumerate(run.samples) if s.id not in ok]
        return remaining

    remaining = _run_checked(dist, "reading earlier predictions", plan if dist.rank == 0 else dict)
    remaining = dist.broadcast(remaining)
    for run in runs:
        run.remaining = remaining[run.name]
        if dist.rank == 0 and run.remaining != list(range(len(run.samples))) and not rescore:
            print(f"{run.name}: resuming, {len(run.remaining)} of {len(run.samples)} samples left", file=sys.stderr)

    # 3. Answer the remaining samples, benchmark after benchmark, gathering each on rank 0.
    if any(run.remaining for run in runs):
        if predictor_factory is None:
            raise EvaluationError("samples are left to answer but no model / predictor was given")
        predictor = _run_checked(dist, "loading the model", predictor_factory)
        for run in runs:
            if not run.remaining:
                continue
            records = _run_checked(
                dist, f"running {run.name}", lambda run=run: _infer(run, predictor, settings, dist, show_progress)
            )
            gathered = dist.gather(records)
            if dist.rank == 0:
                run.new_records = [record for per_rank in gathered for record in per_rank]

    if dist.rank != 0:
        return {}

    # 4. Rank 0: merge, score, write, report.
    results: dict[str, dict[str, Any]] = {}
    for run in runs:
        records = dict(run.done)
        for record in run.new_records:
            key = record["id"]
            if record.get("error") is None or key not in records or records[key].get("error") is not None:
                records[key] = record
        metrics, predictions = _score(run, records)
        submission = run.benchmark.write_submission(predictions, run.folder)
        scores = {
            "benchmark": run.name,
            "primary_metric": run.benchmark.primary_metric,
            "metrics": metrics,
            "model": model_name,
            "data_root": str(run.data_root),
            "settings": settings.to_dict(),
            "limit": limit,
            "world_size": dist.world_size,
            "submission": str(submission) if submission else None,
            "data_problems": problems_report(run.benchmark.problems),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
        }
        _write_json(run.folder / SCORES, scores)
        _write_predictions(run, records, predictions)
        results[run.name] = scores
    _update_summary(output, results)
    if print_summary:
        print(format_summary(results))
    return results


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    versions = {}
    for package in ("videollama3", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _update_summary(output: Path, results: dict[str, dict[str, Any]]) -> None:
    path = output / SUMMARY
    summary = json.loads(path.read_text()) if path.exists() else {}
    for name, scores in results.items():
        summary[name] = {
            "primary_metric": scores["primary_metric"],
            "value": scores["metrics"].get(scores["primary_metric"]),
            "metrics": {k: v for k, v in scores["metrics"].items() if not isinstance(v, dict)},
            "settings": scores["settings"],
            "model": scores["model"],
            "created": scores["created"],
            "data_problems": scores.get("data_problems", {}).get("counts", {}),
        }
    output.mkdir(parents=True, exist_ok=True)
    _write_json(path, summary)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def format_summary(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: benchmark, sample counts, the primary metric, the other headline numbers."""
    headers = ["benchmark", "n", "failed", "unparseable", "metric", "value", "other metrics"]
    rows = []
    for name, scores in results.items():
        metrics, primary = scores["metrics"], scores["primary_metric"]
        others = ", ".join(
            f"{k}={_fmt(v)}"
            for k, v in metrics.items()
            if k not in (primary, "n", "failed", "unparseable")
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        )
        rows.append(
            [
                name,
                _fmt(metrics.get("n")),
                _fmt(metrics.get("failed")),
                _fmt(metrics.get("unparseable")),
                primary,
                _fmt(metrics.get(primary)),
                others,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    for name, scores in results.items():
        # One line per benchmark whose data had problems, so an incomplete copy is seen next to its score.
        problem_counts = scores.get("data_problems", {}).get("counts", {})
        if problem_counts:
            listed = ", ".join(f"{kind}={n}" for kind, n in problem_counts.items())
            out.append(f"{name}: data problems: {listed} (details in {name}/{SCORES})")
    return "\n".join(out)
