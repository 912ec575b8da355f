"""``benchmarks/bench_serving.py`` runs (briefly) against a real server and counts every request."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from server_helpers import API_KEY, MODEL_NAME, REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_serving", REPO_ROOT / "benchmarks" / "bench_serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_load_run_has_no_failures(bench, server):
    result = asyncio.run(bench.run_load(server.url, MODEL_NAME, 4, 2.0, 4, 2, api_key=API_KEY))
    assert result["failed"] == 0, result["failures"]
    assert result["requests"] >= 4
    assert result["latency_p50_s"] <= result["latency_p99_s"]
    assert result["throughput_rps"] > 0


def test_only_loopback_servers_are_load_tested(bench):
    bench.require_loopback("http://127.0.0.1:8000")
    bench.require_loopback("http://localhost:8000")
    with pytest.raises(SystemExit, match="only loopback"):
        bench.require_loopback("http://example.org:8000")
