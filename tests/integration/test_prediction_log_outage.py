"""The prediction store stopped during traffic loses no record once it is back.

A real gunicorn API writes to a real SQLite file. Another connection takes an EXCLUSIVE lock on it (the store is
"down": every write fails after its busy timeout; running as root, a read-only file would not stop us). Traffic
carries on, answered at once; predictions are spooled to disk. Then the server is even stopped while the store is
still down, a new one is started, the lock is released: every prediction ever answered ends up in the store,
exactly once.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.prediction_log import SQLiteStore
from tests.conftest import stop_process
from tests.integration.test_http_api import start_api

pytestmark = pytest.mark.integration


def _send(url: str, records: list[dict[str, Any]], count: int, sent: dict[str, int]) -> list[float]:
    """`count` requests of 1-3 records each; returns the answer times (s)."""
    times = []
    with requests.Session() as session:
        for i in range(count):
            batch = records[i % len(records) : i % len(records) + 1 + i % 3] or records[:1]
            request_id = uuid.uuid4().hex
            started = time.perf_counter()
            response = session.post(f"{url}/predict", json=batch, headers={"X-Request-ID": request_id}, timeout=10)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
            sent[request_id] = len(batch)
    return times


def test_a_store_outage_during_traffic_loses_nothing(
    service_env: dict[str, str], trained_run_id: str, sample_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    api = start_api(service_env, state)
    store = SQLiteStore(api.prediction_log_uri)
    spool = state / "spool" / "prediction-log"
    sent: dict[str, int] = {}
    holder: sqlite3.Connection | None = None
    second = None
    try:
        _send(api.url, sample_records, 30, sent)
        _wait(lambda: store.count() == sum(sent.values()), 20, "predictions before the outage")

        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # the store is down from here on
        during = _send(api.url, sample_records, 60, sent)
        assert max(during) < 2.0, "a dead store must not slow the answers down"
        _wait(lambda: any(spool.glob("*.jsonl")), 30, "spooled predictions on disk")

        stop_process(api.process, timeout=30)  # stopped while the store is still down: the rest goes to the spool
        assert any(spool.glob("*.jsonl"))
        holder.execute("ROLLBACK")  # the store is back
        holder.close()
        holder = None

        second = start_api(service_env, state)  # replays the spool on start
        _send(second.url, sample_records, 10, sent)
        expected = sum(sent.values())
        _wait(lambda: store.count() >= expected and not any(spool.glob("*.jsonl")), 60, "replayed predictions")
        assert store.count() == expected  # every record, none twice
        logged: dict[str, int] = {}
        for entry in store.read(time_zero(), None, None):
            logged[entry["request_id"]] = logged.get(entry["request_id"], 0) + 1
        assert logged == sent
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        stop_process(api.process)
        if second is not None:
            stop_process(second.process)


def time_zero() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)
