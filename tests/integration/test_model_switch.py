"""Hot model switch under load on a real gunicorn API (2 workers): zero failed requests, and every client sees the
old run id and then the new one, never back (POST /admin/reload); SIGHUP to the master switches in place
(same workers, no connection closed), losing none.

A second model is trained through the real flow (1 trial) and becomes `challenger`; the alias is put back after.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

from mlops import registry
from mlops.registry import CHALLENGER
from mlops.settings import Settings
from native.throwaway import stop_process
from tests.support.api import ApiServer, start_api
from tests.support.records import GOOD

pytestmark = pytest.mark.integration

KEY = "switch-test-key-0123456789"
CLIENTS = 6
MAX_LOAD_S = 120  # a bound on time, not on count: a fast machine must not run out of requests before the switch


@pytest.fixture(scope="module")
def second_run(settings: Settings, trained_run_id: str) -> Iterator[tuple[str, str, str]]:
    """(first run, first version, second run): a second model trained and made challenger; restored afterwards."""
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings
    from model_orchestration.train_flow import model_tuning_and_uploading

    client = MlflowClient(settings.mlflow_tracking_uri)
    first = client.get_model_version_by_alias(registry.model_name_for(settings), CHALLENGER)
    assert first.run_id == trained_run_id
    overrides = settings.flow_overrides(run_id=None, train_threads=1, seed=settings.seed + 1)
    try:
        with temporary_settings(client_settings(settings)):
            result = model_tuning_and_uploading(max_evals=1, env="local", settings_overrides=overrides)
        second = result["run_id"]
        client.set_registered_model_alias(
            registry.model_name_for(settings), CHALLENGER, first.version
        )  # servers start on the first
        yield trained_run_id, first.version, second
    finally:
        client.set_registered_model_alias(registry.model_name_for(settings), CHALLENGER, first.version)


@pytest.fixture
def api(service_env: dict[str, str], second_run: Any, tmp_path: Any) -> Iterator[ApiServer]:
    # MODEL_POLL_SECONDS=0: these tests switch by hand; a follower noticing the alias first would be a second switcher
    server = start_api(service_env, tmp_path / "api", workers=2, API_KEY=KEY, MODEL_POLL_SECONDS="0")
    yield server
    stop_process(server.process, timeout=30)


class Load:
    """CLIENTS threads, each a sequential client with its own keep-alive session, until stopped (bounded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.seen: list[list[tuple[float, float, str]]] = [[] for _ in range(CLIENTS)]  # (sent, answered, run id)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        with requests.Session() as session:
            deadline = time.monotonic() + MAX_LOAD_S
            while not self.stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    response = session.post(f"{self.url}/predict", json=GOOD, headers={"x-api-key": KEY}, timeout=30)
                except requests.RequestException as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                self.seen[index].append((sent, time.monotonic(), response.json()["model_run_id"]))
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(len(s) for s in self.seen)


def _workers(master: int) -> set[int]:
    """The gunicorn master's child processes (Linux /proc)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def _set_challenger(settings: Settings, run_id: str) -> None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    for version in client.search_model_versions(f"name='{registry.model_name_for(settings)}'"):
        if version.run_id == run_id:
            client.set_registered_model_alias(registry.model_name_for(settings), CHALLENGER, version.version)
            return
    raise AssertionError(f"run {run_id} is not registered")


def test_admin_reload_under_load_fails_nothing_and_is_monotonic_per_client(
    api: ApiServer, settings: Settings, second_run: tuple[str, str, str]
) -> None:
    old, _, new = second_run
    assert requests.get(f"{api.url}/health", timeout=5).json()["model_run_id"] == old
    with Load(api.url) as load:
        time.sleep(1.5)
        _set_challenger(settings, new)
        answer = requests.post(f"{api.url}/admin/reload", headers={"x-api-key": KEY}, timeout=60)
        switched_at = time.monotonic()
        time.sleep(1.5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_run_id"] == new and answer.json()["previous_run_id"] == old
    assert load.failures == []
    assert load.total >= 100, load.total
    for client in load.seen:
        runs = [run for _, _, run in client]
        assert set(runs) <= {old, new}
        first_new = runs.index(new) if new in runs else len(runs)
        assert runs[:first_new] == [old] * first_new and runs[first_new:] == [new] * (len(runs) - first_new)
        assert old in runs and new in runs
        assert all(run == new for sent, _, run in client if sent > switched_at)
    health = requests.get(f"{api.url}/health", timeout=5).json()
    assert health["model_run_id"] == new and "hot reload" in health["source"]
    print(f"admin reload under load: {load.total} requests, 0 failed")


def test_sighup_to_the_master_switches_gracefully_under_load(
    api: ApiServer, settings: Settings, second_run: tuple[str, str, str]
) -> None:
    first, _, second = second_run
    old = requests.get(f"{api.url}/health", timeout=5).json()["model_run_id"]  # what the alias named at start
    new = first if old == second else second
    _set_challenger(settings, new)
    workers_before = _workers(api.process.pid)
    with Load(api.url) as load:
        time.sleep(1.0)
        os.kill(api.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if all(c and c[-1][2] == new for c in load.seen):
                break
        time.sleep(1.0)
    assert load.failures == []
    assert all(client[-1][2] == new for client in load.seen)
    assert any(run == old for client in load.seen for _, _, run in client)
    for client in load.seen:  # each client: the old run, then the new one, never back
        runs = [run for _, _, run in client]
        first_new = runs.index(new)
        assert runs[first_new:] == [new] * (len(runs) - first_new) and set(runs[:first_new]) <= {old}
    assert _workers(api.process.pid) == workers_before, "SIGHUP switches in place: the same worker processes"
    health = requests.get(f"{api.url}/health", timeout=5).json()
    assert health["model_run_id"] == new and "SIGHUP" in health["source"]
    print(f"SIGHUP under load: {load.total} requests, 0 failed")
