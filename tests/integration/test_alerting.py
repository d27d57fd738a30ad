"""An alert fired end to end (issue 22): the prediction log's store made unwritable under a real gunicorn API, Debian's
Prometheus evaluating rules.yml (every `for:` shortened to 3 s, as in test_monitoring.py), Debian's Alertmanager
routing to the platform's receiver (`python -m monitoring.alerting.receiver`), exactly as `make up` wires them.

Between the fault and its repair /health says `degraded` naming the store; the alert reaches the receiver as firing,
then as resolved once the store is writable again; every prediction answered 200 meanwhile is in the log (counted).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.stores.prediction_log import SQLiteStore
from monitoring.alerting import native as alerting
from monitoring.prometheus import native as prometheus
from native.throwaway import free_port, start_process, stop_process, wait_for_http
from tests.support.api import start_api
from tests.support.processes import system_binary
from tests.support.prometheus import short_rules

pytestmark = pytest.mark.integration

ALERT = "PredictionLogStoreUnavailable"


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Unwritable:
    """The SQLite file and its WAL made unwritable: `chattr +i` as root (root ignores file modes), else chmod."""

    def __init__(self, database: Path) -> None:
        self.files = [database, database.with_name(database.name + "-wal")]
        self.as_root = os.geteuid() == 0

    def __enter__(self) -> Unwritable:
        for path in self.files:
            if self.as_root:
                subprocess.run(["chattr", "+i", str(path)], check=True)
            else:
                path.chmod(0o444)
        return self

    def __exit__(self, *_: object) -> None:
        for path in self.files:
            if self.as_root:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(0o644)


@pytest.fixture
def alerting_stack(service_env: dict[str, str], trained_run_id: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    state = tmp_path / "state"
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "receiver")}
    env = {**service_env, "STATE_DIR": str(state), "ALERT_RECEIVER_PORT": str(ports["receiver"])}
    api = start_api(service_env, state, workers=1)
    processes: list[Any] = [api.process]
    try:
        receiver_log = state / "logs" / "alert-receiver.log"
        receiver = start_process([sys.executable, "-m", "monitoring.alerting.receiver"], receiver_log, env=env)
        processes.append(receiver)
        am_config = alerting.write_config(
            alerting.render(f"http://127.0.0.1:{ports['receiver']}/alerts", "1s", "1s"),
            state / "alertmanager" / "alertmanager.yml",
        )
        am_binary = system_binary("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
        am_log = state / "logs" / "alertmanager.log"
        processes.append(
            start_process(
                alerting.command(am_config, f"127.0.0.1:{ports['alertmanager']}", state / "am-data", am_binary),
                am_log,
                env=env,
            )
        )
        config = prometheus.render(
            {"predict-api": [api.url.removeprefix("http://")], "prometheus": [f"127.0.0.1:{ports['prometheus']}"]},
            rule_files=[short_rules(state / "rules.test.yml")],
            scrape_interval="1s",
            evaluation_interval="1s",
            alertmanagers=[f"127.0.0.1:{ports['alertmanager']}"],
        )
        prom_config = prometheus.write_config(config, state / "prometheus" / "prometheus.yml")
        prom_log = state / "logs" / "prometheus.log"
        prom_binary = system_binary("prometheus", "prometheus")
        processes.append(
            start_process(
                prometheus.command(prom_config, f"127.0.0.1:{ports['prometheus']}", state / "prom-data", prom_binary),
                prom_log,
                env=env,
            )
        )
        wait_for_http(f"http://127.0.0.1:{ports['receiver']}/health", 60, receiver, receiver_log)
        wait_for_http(f"http://127.0.0.1:{ports['alertmanager']}/-/ready", 60, processes[2], am_log)
        wait_for_http(f"http://127.0.0.1:{ports['prometheus']}/-/ready", 60, processes[3], prom_log)
        yield {"api": api, "ports": ports, "logs": [api.log, receiver_log, am_log, prom_log]}
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=20)


def received(port: int) -> list[dict[str, Any]]:
    answer = requests.get(f"http://127.0.0.1:{port}/alerts", params={"limit": 1000}, timeout=5)
    return [a for a in answer.json()["alerts"] if a["alertname"] == ALERT]


def test_an_unwritable_store_fires_an_alert_that_resolves_and_loses_nothing(
    alerting_stack: dict[str, Any], sample_records: list[dict[str, Any]]
) -> None:
    api, ports = alerting_stack["api"], alerting_stack["ports"]
    store = SQLiteStore(api.prediction_log_uri)
    sent: list[str] = []
    session = requests.Session()

    def predict(count: int) -> None:
        for i in range(count):
            request_id = uuid.uuid4().hex
            answer = session.post(
                f"{api.url}/predict", json=sample_records[i % len(sample_records)],
                headers={"X-Request-ID": request_id}, timeout=10,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            sent.append(request_id)

    predict(20)
    wait_until(lambda: store.count() == 20, 30, "the first 20 predictions logged")
    assert session.get(f"{api.url}/health", timeout=5).json()["status"] == "ok"

    with Unwritable(store.path):
        predict(60)  # answered 200 while the store refuses every write
        health = wait_until(
            lambda: (h := session.get(f"{api.url}/health", timeout=5).json())["status"] == "degraded" and h,
            30,
            "/health degraded",
        )
        assert any("PREDICTION_LOG_URI" in p for p in health["problems"]), health
        firing = wait_until(
            lambda: [a for a in received(ports["receiver"]) if a["status"] == "firing"],
            90,
            f"{ALERT} firing at the receiver",
        )
        assert "spooled" in firing[0]["annotations"]["summary"]
        predict(20)

    wait_until(lambda: store.count() == len(sent), 60, "the spool replayed into the store")
    wait_until(
        lambda: [a for a in received(ports["receiver"]) if a["status"] == "resolved"],
        90,
        f"{ALERT} resolved at the receiver",
    )
    assert session.get(f"{api.url}/health", timeout=5).json()["status"] == "ok"
    logged = [entry["request_id"] for entry in store.read(_epoch(), None, None)]
    assert sorted(logged) == sorted(sent), "every prediction answered 200 is in the log, once"
    print(f"\nstore unwritable: {len(sent)} predictions answered, {len(logged)} logged; alert fired and resolved")


def _epoch() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)
