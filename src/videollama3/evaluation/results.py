"""The results folder of an evaluation: what each file holds, how it is read back and the summary table.

``<output>/<benchmark>/``:

- ``predictions.rank<r>.jsonl``: journal of rank ``r`` (one record per answered sample, flushed per batch),
  merged into ``predictions.jsonl`` and removed at the end of a run;
- ``predictions.jsonl``: every sample's response, error, extracted answer and score, in dataset order;
- ``scores.json``: the metrics, settings, data problems and versions of the run;
- ``run.json``: the model and settings the predictions were made with (checked on resume).

``<output>/summary.json``: the headline numbers of every benchmark evaluated into ``<output>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import DataProblem, EvalSettings, Prediction
from .io import iter_jsonl_records

PREDICTIONS = "predictions.jsonl"
SCORES = "scores.json"
RUN_INFO = "run.json"
SUMMARY = "summary.json"
JOURNALS = "predictions.rank*.jsonl"
MAX_PROBLEM_DETAILS = 50  # details kept in scores.json; the counts cover all of them


def journal_path(folder: Path, rank: int) -> Path:
    return folder / f"predictions.rank{rank}.jsonl"


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, replacing ``path`` atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def run_fingerprint(model: str | None, settings: EvalSettings, benchmark: str) -> dict[str, Any]:
    """What ``run.json`` holds: predictions made with another fingerprint are not resumed."""
    # batch_size is left out: it does not change greedy answers (beyond float noise) and may vary on resume.
    fingerprint = {k: v for k, v in settings.to_dict().items() if k != "batch_size"}
    return {"benchmark": benchmark, "model": model, "settings": fingerprint}


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------


def keep_record(records: dict[str, dict[str, Any]], key: str, record: dict[str, Any]) -> None:
    """Add ``record`` to ``records`` under ``key``: a later record wins, except that a failed one never
    replaces a successful one."""
    if record.get("error") is None or key not in records or records[key].get("error") is not None:
        records[key] = record


def read_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Predictions already made: the merged file, then journals of an interrupted run (see :func:`keep_record`)."""
    records: dict[str, dict[str, Any]] = {}
    for path in [folder / PREDICTIONS, *sorted(folder.glob(JOURNALS))]:
        for record in iter_jsonl_records(path):
            if "id" in record:
                keep_record(records, str(record["id"]), record)
    return records


def write_predictions(folder: Path, records: dict[str, dict[str, Any]], predictions: list[Prediction]) -> None:
    """The merged file: the current selection in dataset order with what scoring read, then any other
    records kept from earlier runs (a --limit run does not discard earlier work). Removes the journals."""
    path = folder / PREDICTIONS
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
    for journal in folder.glob(JOURNALS):
        journal.unlink()


# --------------------------------------------------------------------------------------------------
# Scores and summary
# --------------------------------------------------------------------------------------------------


def problems_report(problems: list[DataProblem]) -> dict[str, Any]:
    """The data problems of a load as results JSON: counts per kind and the first details."""
    kinds: dict[str, int] = {}
    for problem in problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    return {
        "counts": dict(sorted(kinds.items())),
        "details": [f"{p.kind}: {p.detail}" for p in problems[:MAX_PROBLEM_DETAILS]],
    }


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers (recorded in ``scores.json``)."""
    import importlib.metadata as metadata

    found = {}
    for package in ("videollama3", "torch", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def update_summary(output: Path, results: dict[str, dict[str, Any]]) -> None:
    """Add (or replace) the headline numbers of ``results`` in ``<output>/summary.json``."""
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
    write_json(path, summary)


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
