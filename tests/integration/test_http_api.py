"""The HTTP API on real servers: gunicorn (2 workers) on a free port, the model from the test MLflow server.

Its predictions equal the logged pyfunc's; every bad input gets its 4xx (never a 500); every answered prediction
reaches the prediction log (a real SQLite file) with its request id; /metrics adds up both workers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from mlops.model_service import ModelService
from mlops.settings import PROJECT_ROOT, Settings
from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import stop_process
from tests.support.api import MAX_BODY, MAX_RECORDS, ApiServer, start_api
from tests.support.records import BAD_RECORDS, GOOD

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(
    service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    server = start_api(service_env, tmp_path_factory.mktemp("predict-api"))
    yield server
    stop_process(server.process, timeout=30)


@pytest.fixture(scope="module")
def pyfunc(settings: Settings, trained_run_id: str) -> Any:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"runs:/{trained_run_id}/model")


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------------------------- same numbers
def test_fast_path_equals_the_logged_pyfunc(
    model_service: ModelService, pyfunc: Any, sample_records: list[dict[str, Any]]
) -> None:
    expected = np.asarray(pyfunc.predict(_frame(sample_records)), dtype=np.float64)
    valid = model_service.validate(sample_records)
    columnar = model_service.predict_records(valid)  # 200 records: the columnar encoder
    row_wise = np.concatenate([model_service.predict_records([r]) for r in valid])  # one at a time
    assert len(expected) == len(sample_records) == len(columnar)
    np.testing.assert_allclose(columnar, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(row_wise, expected, rtol=0, atol=1e-6)
    assert 0.0 < expected.min() < expected.max() < 1.0  # a real model, not a constant


def test_http_predictions_equal_the_pyfunc(
    api: ApiServer, pyfunc: Any, sample_records: list[dict[str, Any]], trained_run_id: str
) -> None:
    expected = np.asarray(pyfunc.predict(_frame(sample_records)), dtype=np.float64)
    batch = requests.post(f"{api.url}/predict", json=sample_records, timeout=30)
    assert batch.status_code == 200
    answers = batch.json()
    assert {a["model_run_id"] for a in answers} == {trained_run_id}
    np.testing.assert_allclose([a["churn chance"] for a in answers], expected, rtol=0, atol=1e-6)
    with requests.Session() as session:
        for record, want in list(zip(sample_records, expected, strict=True))[:40]:
            single = session.post(f"{api.url}/predict", json=record, timeout=10)
            assert single.status_code == 200
            assert single.json()["model_run_id"] == trained_run_id
            assert single.json()["churn chance"] == pytest.approx(want, abs=1e-6)


def test_health_openapi_and_metrics(api: ApiServer, trained_run_id: str) -> None:
    health = requests.get(f"{api.url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["model_run_id"] == trained_run_id
    assert "challenger" in health.json()["source"]
    document = requests.get(f"{api.url}/openapi.json", timeout=5).json()
    assert document["components"]["schemas"]["Record"]["properties"]["customer_age"]["minimum"] == 18
    with requests.Session() as session:  # enough requests that both workers answer some
        for _ in range(30):
            assert session.post(f"{api.url}/predict", json=GOOD, timeout=5).status_code == 200
    text = requests.get(f"{api.url}/metrics", timeout=5).text
    assert f'predict_api_model_info{{run_id="{trained_run_id}"' in text
    ok = [
        line
        for line in text.splitlines()
        if line.startswith('predict_api_requests_total{endpoint="/predict",status="200"}')
    ]
    assert ok and float(ok[0].split()[-1]) >= 30
    assert "predict_api_request_duration_seconds_bucket" in text


# ----------------------------------------------------------------------------------------------- bad input, for real
def _bad_bodies() -> list[tuple[str, bytes, int, str]]:
    small = json.dumps(GOOD).encode()
    return [
        ("not JSON", b"customer_age=45", 400, "(body)"),
        ("truncated", small[:-3], 400, "(body)"),
        ("empty body", b"", 400, "(body)"),
        ("not UTF-8", b'{"gender": "\xff"}', 400, "(body)"),
        ("a number", b"42", 400, "(body)"),
        ("empty list", b"[]", 400, "(body)"),
        ("list of non-objects", b"[1]", 422, "(record)"),
        ("NaN token", small.replace(b'"credit_limit": 12691.0', b'"credit_limit": NaN'), 422, "credit_limit"),
        ("too many records", json.dumps([GOOD] * (MAX_RECORDS + 1)).encode(), 413, "(body)"),
        ("body too large", json.dumps({**GOOD, "pad": "x" * MAX_BODY}).encode(), 413, "(body)"),
        ("deep nesting", b"[" * 90_000 + b"]" * 90_000, 400, "(body)"),
    ]


def test_every_bad_input_gets_its_4xx_never_a_500(api: ApiServer) -> None:
    cases = [(c, json.dumps(r).encode(), 422, f) for c, r, f, _ in BAD_RECORDS] + _bad_bodies()
    with requests.Session() as session:
        for case, body, status, field in cases:
            response = session.post(
                f"{api.url}/predict", data=body, headers={"Content-Type": "application/json"}, timeout=10
            )
            assert response.status_code == status, (case, response.text[:300])
            answer = response.json()
            assert answer["field"] == field, case
            assert answer["reason"], case
            assert response.headers.get("X-Request-ID"), case
    text = requests.get(f"{api.url}/metrics", timeout=5).text
    assert 'status="500"' not in text
    assert "Traceback" not in api.log.read_text(errors="replace")


def test_a_call_refused_before_its_body_leaves_the_keep_alive_connection_usable(api: ApiServer) -> None:
    """gunicorn closes a connection whose unread body passes 64 KiB after answering `keep-alive` (see
    server.request_body); the next call on it then failed with "Remote end closed connection" in about one round
    in six. Twenty-five rounds of both kinds of refusal, each followed by a good call on the same session."""
    too_large = json.dumps({**GOOD, "pad": "x" * MAX_BODY}).encode()
    unrouted = json.dumps({**GOOD, "pad": "x" * 100_000}).encode()
    headers = {"Content-Type": "application/json"}
    with requests.Session() as session:
        for round_ in range(25):
            refused = session.post(f"{api.url}/predict", data=too_large, headers=headers, timeout=10)
            assert refused.status_code == 413, round_
            assert session.post(f"{api.url}/predict", json=GOOD, timeout=10).status_code == 200, round_
            unknown = session.post(f"{api.url}/no-such-route", data=unrouted, headers=headers, timeout=10)
            assert unknown.status_code == 404, round_
            assert session.post(f"{api.url}/predict", json=GOOD, timeout=10).status_code == 200, round_


def test_every_answered_prediction_is_in_the_log_with_its_request_id(
    api: ApiServer, sample_records: list[dict[str, Any]]
) -> None:
    store = api.store()
    sent: list[str] = []
    with requests.Session() as session:
        for record in sample_records[:25]:
            request_id = uuid.uuid4().hex
            response = session.post(f"{api.url}/predict", json=[record, record], headers={"X-Request-ID": request_id})
            assert response.status_code == 200 and response.headers["X-Request-ID"] == request_id
            sent.append(request_id)
    logged = _wait_for_logged(store, set(sent), expected=2 * len(sent), timeout=20)
    assert {e["request_id"] for e in logged} == set(sent)
    assert {e["source"] for e in logged} == {"http"}
    assert all(0 <= e["prediction"] <= 1 and e["input"]["customer_age"] >= 18 for e in logged)


def _wait_for_logged(store: SQLiteStore, request_ids: set[str], expected: int, timeout: float) -> list[dict[str, Any]]:
    """The log's entries of these requests once `expected` are there (the writer batches in the background; other
    tests' predictions may still be landing, so the entries are picked by request id, not counted in total)."""
    import time

    since = pd.Timestamp("2000-01-01").to_pydatetime()
    deadline = time.monotonic() + timeout
    while True:
        logged = [e for e in store.read(since, None, None) if e["request_id"] in request_ids]
        if len(logged) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(logged) == expected, f"{len(logged)} of {expected} predictions in the log"
    return logged


def test_the_native_program_runs_the_same_entry_point() -> None:
    conf = (PROJECT_ROOT / "native" / "supervisord.conf").read_text()
    section = conf.split("[program:predict-api]", 1)[1].split("\n[", 1)[0]
    assert "-m server.api --replica %(process_num)d" in section
    assert "logs/predict-api-%(process_num)d.log" in section
