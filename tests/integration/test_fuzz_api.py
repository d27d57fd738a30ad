"""Fuzzing the real API from its own OpenAPI document (schemathesis 4 + hypothesis): no 5xx, no hang, no crash.

Cases come from `/openapi.json` of a real gunicorn server: schema-valid records (positive) and records that break
the schema on purpose (negative), about 200 of each, every answer within its timeout. The number of cases tried
is printed (run with -s to see it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from native.throwaway import stop_process
from tests.support.api import ApiServer, start_api

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 200
ANSWER_TIMEOUT_S = 10  # "no hang": every case answered well within this


@pytest.fixture(scope="module")
def fuzz_api(
    service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    server = start_api(service_env, tmp_path_factory.mktemp("fuzz-api"), workers=1)
    yield server
    stop_process(server.process, timeout=30)


def fuzz(
    api: ApiServer, path: str, mode: GenerationMode, examples: int, check: Callable[[Any, Any], None]
) -> Counter[int]:
    """Run `examples` generated cases of `POST path` against the server; every answer must be below 500 within
    its timeout, and a 4xx must give a reason; `check(case, response)` adds the operation's own checks. Returns
    the statuses seen."""
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", timeout=10)
    operation = schema[path]["POST"]
    statuses: Counter[int] = Counter()
    with requests.Session() as session:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            response = case.call(base_url=api.url, session=session, timeout=ANSWER_TIMEOUT_S)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.body, response.text[:300])
            if response.status_code >= 400:
                assert response.json()["reason"]
            check(case, response)

        one()
    print(f"\nschemathesis {path} {mode.value}: {sum(statuses.values())} cases, {dict(sorted(statuses.items()))}")
    assert "Traceback" not in api.log.read_text(errors="replace")
    return statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_predict_fuzzed_from_openapi_never_5xx(fuzz_api: ApiServer, mode: GenerationMode) -> None:
    def check(case: Any, response: Any) -> None:
        assert any(name.lower() == "x-request-id" for name in response.headers)

    statuses = fuzz(fuzz_api, "/predict", mode, MAX_EXAMPLES, check)
    total = sum(statuses.values())
    assert total >= MAX_EXAMPLES // 2
    if mode is GenerationMode.POSITIVE:
        # the document promises what validation takes: schema-valid bodies are answered (a 413 for a too-large
        # batch is allowed). This caught unbounded numbers the validator refused beyond the float32 range.
        assert statuses[200] + statuses[413] == total, statuses
    else:
        assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0
    assert fuzz_api.process.poll() is None  # still serving
    assert requests.get(f"{fuzz_api.url}/health", timeout=5).status_code == 200


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_outcomes_fuzzed_from_openapi_never_5xx(fuzz_api: ApiServer, mode: GenerationMode) -> None:
    """Every generated outcome (valid or broken on purpose) is an answer: 200 with counts, or a 4xx with a reason."""

    def check(case: Any, response: Any) -> None:
        if response.status_code < 400:
            assert response.json()["received"] >= 1

    statuses = fuzz(fuzz_api, "/outcomes", mode, MAX_EXAMPLES // 2, check)
    assert sum(statuses.values()) >= MAX_EXAMPLES // 4
    if mode is GenerationMode.POSITIVE:
        assert statuses[200] > 0, statuses  # valid outcomes (of predictions never made: counted unknown)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_v2_infer_fuzzed_from_openapi_never_5xx(fuzz_api: ApiServer, mode: GenerationMode) -> None:
    """Every generated V2 inference request is an answer: 200, or a 4xx naming the part and the reason."""
    statuses = fuzz(fuzz_api, "/v2/models/{model_name}/infer", mode, MAX_EXAMPLES // 2, lambda case, response: None)
    assert sum(statuses.values()) >= MAX_EXAMPLES // 4
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0  # the structure checks answer
