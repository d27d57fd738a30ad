"""Monitoring for real: Debian's Prometheus scraping the real API, Kinesis consumer and drift service.

Every service runs as the native runtime runs it (`python -m ...` subprocesses on free ports, against the session's
moto / MLflow / Prefect). The business simulators send drifted traffic (`--drift`) over HTTP and Kinesis, and the
HTTP one sends each record's outcome a second later with 90% of the labels flipped (`--label-noise 0.9`); then
every PromQL expression of the Grafana dashboard must return data from Prometheus' HTTP API, and the drift alert
and the realized-ROC-AUC alert (a copy of rules.yml with short `for:` durations, evaluated every second) must turn
firing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from monitoring.grafana.queries import DASHBOARDS, queries, to_promql, variable_defaults
from monitoring.prometheus import native
from native.throwaway import free_port, start_process, stop_process, wait_for_http
from tests.support.processes import system_binary
from tests.support.prometheus import short_rules

pytestmark = pytest.mark.integration

DATASET = "bank_churners"


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Stack:
    ports: dict[str, int]
    state_dir: Path
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.logs[name] = self.state_dir / "logs" / f"{name}.log"
        self.processes[name] = start_process(args, self.logs[name], env=env)

    def tail(self, name: str) -> str:
        log = self.logs.get(name)
        return log.read_text(errors="replace")[-3000:] if log and log.exists() else "(no log)"

    def prometheus_query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]


@pytest.fixture(scope="module")
def stack(
    service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prometheus = system_binary("prometheus", "prometheus")
    state = tmp_path_factory.mktemp("monitoring-stack")
    ports = {name: free_port() for name in ("api", "kinesis", "drift", "prometheus")}
    stack = Stack(ports, state)
    env = {
        **service_env,
        "STATE_DIR": str(state),
        "PREDICTION_LOG_URI": f"sqlite:///{state / 'predictions.sqlite'}",
        "API_PORT": str(ports["api"]),
        "API_WORKERS": "1",
        "KINESIS_METRICS_PORT": str(ports["kinesis"]),
        "DRIFT_PORT": str(ports["drift"]),
        "DRIFT_SERVICE_URL": f"http://127.0.0.1:{ports['drift']}",
        "DRIFT_MIN_ROWS": "200",
        "DRIFT_WINDOW_SIZE": "600",
        "DRIFT_INTERVAL_SECONDS": "1",
        "OUTCOME_MIN_LABELS": "100",
        "PERFORMANCE_INTERVAL_SECONDS": "1",
    }
    python = sys.executable
    try:
        stack.start("drift-service", [python, "-m", "monitoring.evidently_service"], env)
        stack.start("predict-api", [python, "-m", "server.api"], env)
        stack.start("serve-kinesis", [python, "-m", "server.kinesis"], env)
        rules = short_rules(state / "rules.test.yml")
        config = native.render(
            {
                "predict-api": [f"127.0.0.1:{ports['api']}"],
                "serve-kinesis": [f"127.0.0.1:{ports['kinesis']}"],
                "drift-service": [f"127.0.0.1:{ports['drift']}"],
                "prometheus": [f"127.0.0.1:{ports['prometheus']}"],
            },
            rule_files=[rules],
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        config_path = native.write_config(config, state / "prometheus" / "prometheus.yml")
        stack.start(
            "prometheus",
            native.command(config_path, f"127.0.0.1:{ports['prometheus']}", state / "prometheus" / "data", prometheus),
            env,
        )
        wait_for_http(f"{stack.url('drift')}/health", 60, stack.processes["drift-service"], stack.logs["drift-service"])
        wait_for_http(f"{stack.url('prometheus')}/-/ready", 60, stack.processes["prometheus"], stack.logs["prometheus"])
        wait_for_http(f"{stack.url('api')}/health", 180, stack.processes["predict-api"], stack.logs["predict-api"])
        wait_for_http(
            f"{stack.url('kinesis')}/metrics", 180, stack.processes["serve-kinesis"], stack.logs["serve-kinesis"]
        )
        yield stack
    finally:
        for process in reversed(list(stack.processes.values())):
            stop_process(process, timeout=20)


@pytest.fixture(scope="module")
def drifted_traffic(stack: Stack, service_env: dict[str, str]) -> Iterator[Stack]:
    """The simulators with --drift: HTTP batches keep flowing (rates need fresh samples), Kinesis puts a few."""
    env = {**service_env, "STATE_DIR": str(stack.state_dir)}
    python = sys.executable
    http = start_process(
        [
            python,
            "-m",
            "simulation_business.send_data_api",
            "--drift",
            "--batch",
            "20",
            "--interval",
            "0.2",
            "--url",
            f"{stack.url('api')}/predict",
            "--seed",
            "3",
            "--outcome-delay",
            "1",
            "--label-noise",
            "0.9",
        ],
        stack.state_dir / "logs" / "send-data-api.log",
        env,
    )
    kinesis = subprocess.run(
        [
            python,
            "-m",
            "simulation_business.send_data_kinesis",
            "--drift",
            "--batch",
            "50",
            "--count",
            "6",
            "--interval",
            "0.2",
            "--seed",
            "4",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert kinesis.returncode == 0, kinesis.stdout[-2000:] + kinesis.stderr[-2000:]
    # a few refused requests, so the 4xx panels and rules see a real series
    for _ in range(5):
        answer = requests.post(f"{stack.url('api')}/predict", json={"customer_age": "old"}, timeout=10)
        assert 400 <= answer.status_code < 500
    # by-id lookups of customers the online store does not hold: the lookup panel's "miss" series
    for _ in range(5):
        assert requests.get(f"{stack.url('api')}/customers/000000000/churn", timeout=10).status_code == 404
    try:
        yield stack
    finally:
        stop_process(http)


def test_drift_service_sees_the_drift(drifted_traffic: Stack, trained_run_id: str) -> None:
    stack = drifted_traffic

    def computed() -> dict[str, Any] | None:
        status = requests.get(f"{stack.url('drift')}/status", timeout=5).json()["datasets"][DATASET]
        return status if status["status"] == "ok" and status["window_rows"] >= 600 else None

    try:
        status = wait_until(computed, 120, "a drift computation on a full window")
    except AssertionError:
        raise AssertionError(stack.tail("drift-service") + stack.tail("predict-api")) from None
    assert status["reference_run_id"] == trained_run_id
    assert status["reference"].startswith("s3://") and status["reference"].endswith("reference.parquet")
    assert status["drift"]["drift_share"] > 0.3, status["drift"]
    drifted = {name for name, column in status["drift"]["columns"].items() if column["drifted"]}
    assert {"credit_limit", "customer_age"} <= drifted


def test_the_drift_window_takes_records_only_with_the_service_key(
    drifted_traffic: Stack, service_env: dict[str, str]
) -> None:
    """The API and the consumer feed the window with DRIFT_SERVICE_KEY (the test above saw their drift); a caller
    without it, or with another, is refused before anything reaches the window."""
    url = f"{drifted_traffic.url('drift')}/iterate/bank_churners"
    record = [{"customer_age": 40, "prediction": 0.5, "model_run_id": "x", "request_id": "r", "timestamp": "t"}]
    assert requests.post(url, json=record, timeout=10).status_code == 401
    refused = requests.post(url, json=record, headers={"x-service-key": "not-the-key"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["field"] == "x-service-key"
    taken = requests.post(url, json=record, headers={"x-service-key": service_env["DRIFT_SERVICE_KEY"]}, timeout=10)
    assert taken.status_code in (202, 422), taken.text  # past the key check: the contract decides


def test_every_dashboard_expression_returns_data(drifted_traffic: Stack, trained_run_id: str) -> None:
    stack = drifted_traffic
    dashboard_path = DASHBOARDS / "churn.json"
    variables = {**variable_defaults(json.loads(dashboard_path.read_text())), "__rate_interval": "30s"}
    # wait until the drift gauges and the Kinesis counters reached Prometheus
    wait_until(lambda: stack.prometheus_query(f'drift_share{{dataset="{DATASET}"}} > 0.3'), 120, "drift_share > 0.3")
    wait_until(lambda: stack.prometheus_query("kinesis_records_in_total > 0"), 120, "Kinesis records counted")
    empty = []
    for query in queries(dashboard_path):
        expr = to_promql(query.expr, variables)
        try:
            result = wait_until(lambda expr=expr: stack.prometheus_query(expr), 30, expr)
        except AssertionError:
            result = []
        values = [float(r["value"][1]) for r in result]
        if not result or not any(math.isfinite(v) for v in values):
            empty.append((query.panel, expr, result))
    assert not empty, f"dashboard queries without data: {empty}"
    run_ids = {r["metric"].get("run_id") for r in stack.prometheus_query("max by (run_id) (predict_api_model_info)")}
    assert run_ids == {trained_run_id}
    buckets = 'predict_api_request_duration_seconds_bucket{endpoint="/predict"}'
    p99 = stack.prometheus_query(f"histogram_quantile(0.99, sum by (le) (rate({buckets}[30s])))")
    assert 0 < float(p99[0]["value"][1]) < 5


def test_drift_alert_fires(drifted_traffic: Stack) -> None:
    stack = drifted_traffic

    def firing() -> list[dict[str, Any]]:
        alerts = requests.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "DataDriftDetected" and a["state"] == "firing"]

    alerts = wait_until(firing, 120, "DataDriftDetected firing")
    assert alerts[0]["labels"]["dataset"] == DATASET
    assert alerts[0]["labels"]["severity"] == "warning"
    assert float(alerts[0]["value"]) > 0.3
    # the API answers: the no-predictions alert stays quiet
    alerts = requests.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    assert not [a for a in alerts if a["labels"]["alertname"] == "NoPredictions" and a["state"] == "firing"]


def test_realized_auc_alert_fires_when_the_labels_say_the_model_is_wrong(
    drifted_traffic: Stack, trained_run_id: str
) -> None:
    stack = drifted_traffic

    def firing() -> list[dict[str, Any]]:
        alerts = requests.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "RealizedRocAucBelowFloor" and a["state"] == "firing"]

    try:
        alerts = wait_until(firing, 120, "RealizedRocAucBelowFloor firing")
    except AssertionError:
        raise AssertionError(stack.tail("drift-service") + stack.tail("predict-api")) from None
    assert alerts[0]["labels"]["model_run_id"] == trained_run_id
    assert alerts[0]["labels"]["dataset"] == DATASET
    assert float(alerts[0]["value"]) < 0.5  # 90% of the labels flipped: worse than a coin
    labels = stack.prometheus_query(f'realized_labels{{model_run_id="{trained_run_id}"}}')
    assert float(labels[0]["value"][1]) >= 100
