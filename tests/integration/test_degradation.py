"""Graceful degradation on a real gunicorn API: every dependency dead at once.

MLflow is unreachable at start (the model comes from the local cache, and /health says so), the prediction store
(MongoDB URI with nobody listening) and the drift service are dead: every request is still answered, predictions
are spooled to disk (none lost), and each dead dependency is logged once per process, naming the service and the
setting to fix.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mlops.registry import LAST_SERVED
from mlops.settings import Settings
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http

pytestmark = pytest.mark.integration

REQUESTS = 120


@pytest.fixture(scope="module")
def degraded_api(
    settings: Settings, service_env: dict[str, str], model_service: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any, Any]]:
    state = tmp_path_factory.mktemp("degraded-api")
    source_cache = settings.model_cache_dir
    assert (source_cache / LAST_SERVED).exists()
    shutil.copytree(source_cache, state / "model-cache")
    port, dead_mlflow, dead_mongo, dead_drift = free_port(), free_port(), free_port(), free_port()
    env = {
        **service_env,
        "STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead_mlflow}",
        "PREDICTION_LOG_URI": f"mongodb://127.0.0.1:{dead_mongo}/churn?serverSelectionTimeoutMS=500",
        "DRIFT_SERVICE_URL": f"http://127.0.0.1:{dead_drift}",
        "API_PORT": str(port),
        "API_WORKERS": "1",
    }
    log = state / "api.log"
    process = start_process([str(VENV_BIN / "python"), "-m", "server.api"], log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", 120, process, log)
        yield url, state, log
    finally:
        stop_process(process, timeout=30)


def _spooled(directory: Any) -> int:
    """Entries waiting in the spool, counting files the server has claimed for a replay attempt."""
    files = [p for p in directory.glob("*.jsonl*") if not p.name.startswith(".")] if directory.exists() else []
    total = 0
    for path in files:
        try:
            total += sum(1 for _ in path.open())
        except FileNotFoundError:  # renamed under us: count it on the next look
            return -1
    return total


def test_everything_dead_costs_no_request_and_says_so_once(
    degraded_api: tuple[str, Any, Any], model_service: Any, sample_records: list[dict[str, Any]]
) -> None:
    url, state, log = degraded_api
    health = requests.get(f"{url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["model_run_id"] == model_service.run_id
    assert "cache" in health.json()["source"] and "MLFLOW_TRACKING_URI" in health.json()["source"]
    answered = 0
    slowest = 0.0
    with requests.Session() as session:
        for i in range(REQUESTS):
            started = time.monotonic()
            response = session.post(f"{url}/predict", json=sample_records[i % len(sample_records)], timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200, response.text
            assert response.json()["model_run_id"] == model_service.run_id
            answered += 1
    assert answered == REQUESTS
    assert slowest < 2.0  # a dead store or drift service never sits on the request path (not a timing claim)
    spool = state / "spool" / "prediction-log"
    deadline = time.monotonic() + 20
    while _spooled(spool) < REQUESTS and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _spooled(spool) == REQUESTS  # nothing lost: every answered prediction waits for the store
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    store_lines = [line for line in text.splitlines() if "PREDICTION_LOG_URI" in line]
    drift_lines = [line for line in text.splitlines() if "DRIFT_SERVICE_URL" in line and "did not take" in line]
    assert len(store_lines) == 1, store_lines
    assert "prediction store" in store_lines[0]
    assert len(drift_lines) == 1, drift_lines
    assert "drift service" in drift_lines[0]
    mlflow_warnings = [line for line in text.splitlines() if "MLFLOW_TRACKING_URI" in line and "WARNING" in line]
    assert mlflow_warnings and all("MLflow" in line for line in mlflow_warnings)
    assert len(mlflow_warnings) <= 2, mlflow_warnings  # master (cache warm-up) and the one worker: once each
