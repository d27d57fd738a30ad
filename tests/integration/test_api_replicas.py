"""API replicas behind the gateway, as the native runtime runs them: two gunicorn servers (`python -m server.api
--replica i`) behind Debian's nginx (`python -m server.gateway_native`), the rate limit counted in a real
redis-server, the session's MLflow for the model.

- requests through the gateway's one port are spread over both replicas;
- the rate limit is one count per key across the replicas (Redis), not one per replica and worker;
- a replica stopped under traffic (SIGTERM, what a scale-down or a restart sends) fails no request: the gateway
  retries the ones it could not take on the other, and every answered prediction is in the log;
- a hot reload made through the gateway reaches the other replica too (server.fleet);
- the client's address survives the gateway (X-Forwarded-For believed from it only).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import VENV_BIN, free_port, free_port_run, start_process, stop_process, wait_for_http
from tests.support.redis_server import redis_server

ADMIN_KEY = "replicas-admin-key"
LIMITED_KEY = "replicas-limited-key"
TRAFFIC_KEYS = [f"replicas-traffic-key-{i}" for i in range(6)]
STOP_KEYS = [f"replicas-stop-key-{i}" for i in range(6)]  # the stop test's clients: each well under LIMIT
LIMIT = 40  # per key and minute


@dataclass
class Fleet:
    url: str
    replica_urls: list[str]
    replicas: list[Any]
    logs: list[Path]
    gateway: Any
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.env["PREDICTION_LOG_URI"])


@pytest.fixture(scope="module")
def fleet(
    service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    state = tmp_path_factory.mktemp("api-replicas")
    with redis_server(state, password="replicas-redis") as (redis_uri, _):
        replica_port, gateway_port = free_port_run(2), free_port()
        env = {
            **service_env,
            "RUN_ID": trained_run_id,
            "STATE_DIR": str(state),
            "PREDICTION_LOG_URI": f"sqlite:///{state / 'predictions.sqlite'}",
            "DRIFT_SERVICE_URL": "",
            "API_PORT": str(gateway_port),
            "API_REPLICA_PORT": str(replica_port),
            "API_REPLICAS": "2",
            "API_WORKERS": "2",
            "API_TRUSTED_PROXIES": "1",  # as supervisord.conf starts them
            "API_KEY": ADMIN_KEY,
            "API_KEYS": ",".join(f"{key}:predict" for key in (LIMITED_KEY, *TRAFFIC_KEYS, *STOP_KEYS)),
            "RATE_LIMIT": f"{LIMIT}/minute",
            "RATE_LIMIT_STORAGE_URI": redis_uri,
        }
        python = str(VENV_BIN / "python")
        logs = [state / "logs" / f"predict-api-{i}.log" for i in range(2)]
        replicas = [start_process([python, "-m", "server.api", "--replica", str(i)], logs[i], env) for i in range(2)]
        gateway_log = state / "logs" / "api-gateway.log"
        gateway = start_process([python, "-m", "server.gateway_native"], gateway_log, env)
        urls = [f"http://127.0.0.1:{replica_port + i}" for i in range(2)]
        try:
            for url, process, log in zip(urls, replicas, logs, strict=True):
                wait_for_http(f"{url}/health", 180, process, log)
            wait_for_http(f"http://127.0.0.1:{gateway_port}/health", 30, gateway, gateway_log)
            yield Fleet(f"http://127.0.0.1:{gateway_port}", urls, replicas, logs, gateway, state, env)
        finally:
            stop_process(gateway)
            for process in replicas:
                stop_process(process, timeout=30)


def requests_counted(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    pattern = r'^predict_api_requests_total\{[^}]*endpoint="/predict"[^}]*\} (\S+)'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_one_port_answers_and_both_replicas_serve(fleet: Fleet, sample_records: list[dict[str, Any]]) -> None:
    with requests.Session() as session:
        answers = [
            session.post(
                f"{fleet.url}/predict",
                json=sample_records[i % 10],
                headers={"x-api-key": TRAFFIC_KEYS[i % 6]},
                timeout=30,
            )
            for i in range(60)
        ]
    assert [a.status_code for a in answers] == [200] * 60, [a.text for a in answers if a.status_code != 200][:3]
    assert all(a.headers.get("X-Request-ID") for a in answers)
    counted = [requests_counted(url) for url in fleet.replica_urls]
    assert all(n > 0 for n in counted) and sum(counted) >= 60, counted  # spread over both, not all on one


def test_the_rate_limit_is_one_count_across_the_replicas(fleet: Fleet, sample_records: list[dict[str, Any]]) -> None:
    codes = [
        requests.post(
            f"{fleet.url}/predict", json=sample_records[0], headers={"x-api-key": LIMITED_KEY}, timeout=30
        ).status_code
        for _ in range(LIMIT + 15)
    ]
    # counted per replica and worker, 4 x 40 would pass; one count in Redis lets exactly 40 through this minute
    assert codes.count(200) == LIMIT and codes.count(429) == 15, codes


def test_the_gateway_passes_the_clients_address_and_keeps_its_request_id(fleet: Fleet, sample_records: list) -> None:
    answer = requests.post(
        f"{fleet.url}/predict",
        json=sample_records[0],
        headers={"x-api-key": TRAFFIC_KEYS[0], "X-Request-ID": "replicas-own-id-1"},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "replicas-own-id-1"
    made = requests.post(f"{fleet.url}/predict", json=sample_records[0], headers={"x-api-key": TRAFFIC_KEYS[1]})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"]), made.headers  # nginx's $request_id


def test_a_hot_reload_through_the_gateway_reaches_the_other_replica(fleet: Fleet) -> None:
    answer = requests.post(f"{fleet.url}/admin/reload", headers={"x-api-key": ADMIN_KEY}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["fleet_generation"] >= 1
    order = json.loads((fleet.state / "predict-api" / "fleet-order.json").read_text())
    origin = order["origin"]
    other = [i for i, url in enumerate(fleet.replica_urls) if not origin.endswith(f"-{url.rsplit(':', 1)[1]}")]
    assert len(other) == 1, (origin, fleet.replica_urls)
    log = fleet.logs[other[0]]
    deadline = time.monotonic() + 30
    while "reloading here too" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    # its master switched its own workers: its SwitchBoard has an order now (a fresh master starts without one)
    port = fleet.replica_urls[other[0]].rsplit(":", 1)[1]
    deadline = time.monotonic() + 30
    # the log line comes before the master writes the order: wait for the file, not just look once
    while not (switches := list((fleet.state / "predict-api").glob(f"model-switch-*-{port}.json"))):
        assert time.monotonic() < deadline, sorted(p.name for p in (fleet.state / "predict-api").iterdir())
        time.sleep(0.3)
    assert json.loads(switches[0].read_text())["generation"] >= 1
    health = requests.get(f"{fleet.replica_urls[other[0]]}/health", timeout=10).json()
    assert health["model_run_id"] == answer.json()["model_run_id"]


def test_a_replica_stopped_under_traffic_fails_no_request_and_loses_no_prediction(
    fleet: Fleet, sample_records: list[dict[str, Any]]
) -> None:
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(key: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    reply = session.post(
                        f"{fleet.url}/predict", json=sample_records[1], headers={"x-api-key": key}, timeout=30
                    )
                except requests.RequestException as error:
                    failures.append(f"{type(error).__name__}: {error}")
                    continue
                if reply.status_code == 200:
                    answered.append(reply.headers["X-Request-ID"])
                else:
                    failures.append(f"{reply.status_code}: {reply.text[:200]}")
                time.sleep(0.25)

    clients = [threading.Thread(target=client, args=(key,), daemon=True) for key in STOP_KEYS]
    for thread in clients:
        thread.start()
    time.sleep(3)
    before = len(answered)
    stop_process(fleet.replicas[1], timeout=30)  # SIGTERM: gunicorn finishes what it holds, its log drains
    time.sleep(4)  # traffic on the one replica left
    stop.set()
    for thread in clients:
        thread.join(timeout=60)
    assert failures == [], failures[:5]
    assert before > 10 and len(answered) > before + 10, (before, len(answered))
    # every answered prediction is in the shared log, the stopped replica's included
    store = fleet.store()
    deadline = time.monotonic() + 30
    while True:
        logged = {e["request_id"] for e in store.read(datetime(2000, 1, 1, tzinfo=UTC), None, None)}
        if set(answered) <= logged or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered predictions not in the log"
