"""Schemathesis fuzzes the OpenAPI schema of a running server: no 5xx, no crash, answers as declared."""

from __future__ import annotations

import pytest
import requests
from server_helpers import API_KEY, MODEL_NAME, RunningServer, make_config

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz test needs schemathesis (pip install schemathesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (after the skip check)
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_EXAMPLES = 30  # per operation (positive and negative cases); bounded to keep the suite fast


@pytest.fixture(scope="module")
def fuzz_server(loaded_model, media_root):
    # Short answers: the fuzzer's valid requests should each take milliseconds, not seconds.
    running = RunningServer(make_config(media_root, max_new_tokens=8), loader=lambda config: loaded_model)
    yield running
    health = requests.get(f"{running.url}/health", timeout=10)
    running.stop()
    assert health.status_code == 200  # still serving after the whole fuzz run


def _check(case, server) -> None:
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str) and len(repr(body)) % 2 == 0:
        # Half of the generated chat requests name the served model, so they get past the 404 and
        # reach media resolution, the processor and the engine.
        body["model"] = MODEL_NAME
    response = case.call(base_url=server.url, headers=AUTH, timeout=60)
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_fuzzed_requests_never_fail_the_server(fuzz_server):
    # Cases come from schemathesis' strategies driven by hypothesis directly, not through schemathesis'
    # pytest plugin, which reaches into pytest's private attributes (broken by pytest 9.2).
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=MAX_EXAMPLES // 2,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case):
                _check(case, fuzz_server)

            try:
                fuzz()
            except Unsatisfiable:  # an operation without inputs has no invalid requests to make
                assert mode is GenerationMode.NEGATIVE, operation
