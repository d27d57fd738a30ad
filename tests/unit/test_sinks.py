"""Sinks: the drift sink posts batches in the drift service's contract off the caller's thread, and a dead drift
service costs the caller nothing (dropped, counted, logged once naming DRIFT_SERVICE_URL)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.stores.prediction_log import PredictionLog, SQLiteStore, make_entry
from server.sinks import DriftSink, PredictionLogSink, submit_all


def entries(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        make_entry({"customer_age": 30 + i, "gender": "F"}, 0.25, "run-9", "http", f"r{i}")
        for i in range(start, start + n)
    ]


class FakeSession:
    """Records POSTs; `fail` makes them fail like a dead server; `delay` like a slow one."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.fail, self.delay = fail, delay
        self.posts: list[tuple[str, list[dict[str, Any]], float]] = []
        self.lock = threading.Lock()

    def post(self, url: str, json: list[dict[str, Any]], timeout: float, headers: dict[str, str]) -> Any:
        self.headers = headers
        time.sleep(self.delay)
        if self.fail:
            raise requests.ConnectionError("connection refused")
        with self.lock:
            self.posts.append((url, json, timeout))
        response = requests.Response()
        response.status_code = 200
        return response


def test_drift_sink_posts_batches_in_the_contract() -> None:
    session = FakeSession()
    sink = DriftSink(
        "http://drift:8085/",
        lambda: "bank_churners",
        batch_size=10,
        flush_interval_s=0.05,
        timeout_s=0.3,
        session=session,
        headers={"x-service-key": "k"},
    )  # type: ignore[arg-type]
    sink.submit(entries(25))
    assert sink.flush(5)
    sink.close()
    urls = {url for url, _, _ in session.posts}
    assert urls == {"http://drift:8085/iterate/bank_churners"}
    assert session.headers == {"x-service-key": "k"}  # the drift service's key goes with every batch
    sent = [row for _, batch, _ in session.posts for row in batch]
    assert len(sent) == 25 and max(len(batch) for _, batch, _ in session.posts) <= 10
    assert [row["request_id"] for row in sent] == [f"r{i}" for i in range(25)]
    first = sent[0]
    assert set(first) == {"customer_age", "gender", "prediction", "model_run_id", "request_id", "timestamp"}
    assert first["prediction"] == 0.25 and first["model_run_id"] == "run-9"
    assert all(timeout == 0.3 for _, _, timeout in session.posts)
    assert sink.sent == 25 and sink.dropped == 0


def test_a_dead_drift_service_costs_the_caller_nothing(caplog: pytest.LogCaptureFixture) -> None:
    session = FakeSession(fail=True, delay=0.2)
    sink = DriftSink("http://127.0.0.1:9", "bank_churners", batch_size=5, flush_interval_s=0.01, session=session)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="server.sinks"):
        started = time.perf_counter()
        for i in range(20):
            sink.submit(entries(1, i))
        submit_time = time.perf_counter() - started
        assert sink.flush(10)
    sink.close()
    assert submit_time < 0.1  # four slow failing POSTs happened, none on the caller's thread
    assert sink.dropped == 20 and sink.sent == 0
    warnings = [r for r in caplog.records if "DRIFT_SERVICE_URL=http://127.0.0.1:9" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per batch


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    session = FakeSession(delay=0.5)
    sink = DriftSink("http://drift", "d", batch_size=1, flush_interval_s=0.01, max_queue=3, session=session)  # type: ignore[arg-type]
    started = time.perf_counter()
    sink.submit(entries(10))
    assert time.perf_counter() - started < 0.1
    assert sink.dropped >= 6
    sink.close(timeout=0.1)


def test_prediction_log_sink_and_a_failing_sink_never_raise(tmp_path: Path) -> None:
    log = PredictionLog(SQLiteStore(f"sqlite:///{tmp_path / 'p.sqlite'}"), tmp_path / "spool")
    good = PredictionLogSink(log)

    class Broken:
        def submit(self, records: Any) -> None:
            raise RuntimeError("bug in a sink")

        def close(self, timeout: float = 5.0) -> None:
            return None

    submit_all([Broken(), good], entries(4))  # the broken one first: the good one still gets them
    assert log.flush(5)
    assert log.count() == 4
    good.close()
