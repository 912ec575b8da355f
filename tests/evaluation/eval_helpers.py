"""What the evaluation tests share: a test case, generated media, running ``videollama3 eval`` and reading its results."""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
FIXTURE_MODEL = REPO_ROOT / "tests" / "fixtures" / "parity" / "model"
SCRIPTED = f"{HERE / 'scripted_predictor.py'}:ScriptedPredictor"


@dataclass
class Case:
    benchmark: str
    data_root: Path
    responses: dict[str, Any]
    expected: dict[str, float]  # "a.b.c" paths into scores["metrics"]
    extra_args: list[str] = field(default_factory=list)
    needs_parquet: bool = False


# --------------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------------

_VIDEO_CACHE: dict[tuple, bytes] = {}


def make_png(path: Path, size=(56, 42), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_bytes(size=(56, 42), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_mp4(path: Path, seconds: int = 4, fps: int = 4, size=(56, 42)) -> Path:
    """A short H.264 video of moving noise (made once per shape, then copied)."""
    import av

    key = (seconds, fps, size)
    if key not in _VIDEO_CACHE:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            rng = np.random.default_rng(1)
            for _ in range(seconds * fps):
                frame = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        _VIDEO_CACHE[key] = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_VIDEO_CACHE[key])
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run_eval(case: Case, output: Path, *extra: str, scripted: bool = True, script_dir: Path | None = None) -> int:
    from videollama3.cli import main

    args = ["eval", "--benchmark", case.benchmark, "--data-root", str(case.data_root), "--output", str(output)]
    if scripted:
        script = (script_dir or output.parent) / f"{case.benchmark}_script.json"
        script.write_text(json.dumps(case.responses))
        args += ["--model", str(script), "--predictor", SCRIPTED]
    args += ["--no-progress", *case.extra_args, *extra]
    return main(args)


def scores(output: Path, benchmark: str) -> dict[str, Any]:
    return json.loads((output / benchmark / "scores.json").read_text())


def metric(metrics: dict[str, Any], path: str) -> Any:
    """``metrics["a"]["b.c"]`` for ``"a.b.c"``: keys may contain dots (``R1@0.5``), the longest wins."""
    if path in metrics:
        return metrics[path]
    for cut in range(len(path) - 1, 0, -1):
        if path[cut] == "." and path[:cut] in metrics and isinstance(metrics[path[:cut]], dict):
            return metric(metrics[path[:cut]], path[cut + 1 :])
    raise KeyError(path)


def seen(output: Path, benchmark: str) -> dict[str, dict]:
    path = output.parent / f"{benchmark}_script.seen.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def predictions(output: Path, benchmark: str) -> list[dict]:
    return [json.loads(line) for line in (output / benchmark / "predictions.jsonl").read_text().splitlines()]


def python() -> str:
    return sys.executable


# --------------------------------------------------------------------------------------------------
# Video benchmarks
# --------------------------------------------------------------------------------------------------


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def scripted_eval(tmp_path: Path, name: str, data_root: Path, responses: dict[str, str], **options):
    """``evaluate`` in this process with the scripted predictor answering ``responses`` (by sample id)."""
    from videollama3.evaluation import EvalJob, build_predictor, evaluate

    script = tmp_path / f"{name}_script.json"
    script.write_text(json.dumps(responses))
    job = EvalJob(
        [name],
        data_root,
        tmp_path / "out",
        predictor_factory=lambda: build_predictor(str(script), None, spec=SCRIPTED),
        model_name=str(script),
        show_progress=False,
        **options,
    )
    return evaluate(job)
