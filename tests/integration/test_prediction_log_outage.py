"""The prediction store down for 30 s during steady traffic: zero failed requests, zero records missing once it is
back (counted); then the server stopped while the store is still down, and a new one replays what was left.

A real gunicorn API writes to a real SQLite file. Another connection takes an EXCLUSIVE lock on it (the store is
"down": every write fails after its busy timeout; running as root, a read-only file would not stop us).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import stop_process
from tests.support.api import start_api

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
CLIENTS = 2
PAUSE_S = 0.05  # per client between requests: a steady ~30-40 requests/s in all


class SteadyTraffic:
    """CLIENTS threads posting 1-3 records per request until stopped; every answer and failure is counted."""

    def __init__(self, url: str, records: list[dict[str, Any]]) -> None:
        self.url = url
        self.records = records
        self.sent: dict[str, int] = {}  # request id -> records answered
        self.failures: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        with requests.Session() as session:
            i = index
            while not self._stop.is_set():
                i += CLIENTS
                batch = self.records[i % len(self.records) : i % len(self.records) + 1 + i % 3] or self.records[:1]
                request_id = uuid.uuid4().hex
                started = time.perf_counter()
                try:
                    response = session.post(
                        f"{self.url}/predict", json=batch, headers={"X-Request-ID": request_id}, timeout=10
                    )
                except requests.RequestException as error:
                    with self._lock:
                        self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                with self._lock:
                    self.slowest = max(self.slowest, time.perf_counter() - started)
                    if response.status_code == 200:
                        self.sent[request_id] = len(batch)
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                self._stop.wait(PAUSE_S)

    def __enter__(self) -> SteadyTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def answered(self) -> int:
        with self._lock:
            return len(self.sent)


def _send(url: str, records: list[dict[str, Any]], count: int, sent: dict[str, int]) -> None:
    with SteadyTraffic(url, records) as traffic:
        _wait(lambda: traffic.answered() >= count, 60, f"{count} answers")
    assert traffic.failures == []
    sent.update(traffic.sent)


def _logged(store: SQLiteStore) -> dict[str, int]:
    logged: dict[str, int] = {}
    for entry in store.read(time_zero(), None, None):
        logged[entry["request_id"]] = logged.get(entry["request_id"], 0) + 1
    return logged


def test_a_30s_store_outage_under_steady_traffic_fails_nothing_and_loses_nothing(
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
        # 1. the store down for OUTAGE_S during steady traffic, then back while the traffic goes on
        with SteadyTraffic(api.url, sample_records) as traffic:
            _wait(lambda: traffic.answered() >= 30, 30, "traffic before the outage")
            holder = sqlite3.connect(store.path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # the store is down from here on
            down_from = traffic.answered()
            time.sleep(OUTAGE_S)
            during = traffic.answered() - down_from
            assert any(spool.glob("*.jsonl")), "answers during the outage must wait in the spool"
            holder.execute("ROLLBACK")  # the store is back
            holder.close()
            holder = None
            time.sleep(3.0)  # traffic on after the outage
        assert traffic.failures == [], traffic.failures[:5]
        assert during >= 100, f"only {during} requests during the outage: not steady traffic"
        assert traffic.slowest < 5.0, "a dead store must not hold the answers up (not a timing claim)"
        sent.update(traffic.sent)
        expected = sum(sent.values())
        _wait(lambda: store.count() >= expected and not any(spool.glob("*.jsonl")), 60, "the spool replayed")
        assert store.count() == expected  # every record, none twice
        assert _logged(store) == sent
        print(
            f"\nstore down {OUTAGE_S:.0f} s under steady traffic: {len(sent)} requests ({during} during the outage), "
            f"0 failed; {expected} records expected, {store.count()} logged, 0 missing"
        )

        # 2. down again, and the server stopped before it is back: the next server replays the spool
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        _send(api.url, sample_records, 40, sent)
        stop_process(api.process, timeout=30)  # what the writer still held goes to the spool on the way out
        assert any(spool.glob("*.jsonl"))
        holder.execute("ROLLBACK")
        holder.close()
        holder = None
        second = start_api(service_env, state)  # replays the spool on start
        _send(second.url, sample_records, 10, sent)
        expected = sum(sent.values())
        _wait(lambda: store.count() >= expected and not any(spool.glob("*.jsonl")), 60, "replayed predictions")
        assert store.count() == expected
        assert _logged(store) == sent
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
