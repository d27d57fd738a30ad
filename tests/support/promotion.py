"""The promotion loop's helpers: train a version, run `promote`, send traffic, read which model answered."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from mlops import aws
from mlops.settings import Settings
from native.throwaway import VENV_BIN
from tests.support.kinesis import put_envelopes, read_stream, wait_until
from tests.support.processes import TEST_TRIALS

MODEL_NAME = "churn-model-promotion-test"


def train_version(settings: Settings, state: Path, model_name: str = MODEL_NAME) -> str:
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings
    from model_orchestration.train_flow import model_tuning_and_uploading

    overrides = settings.flow_overrides(state_dir=str(state), run_id=None, train_threads=1, model_name=model_name)
    with temporary_settings(client_settings(settings)):
        return model_tuning_and_uploading(max_evals=TEST_TRIALS, env="local", settings_overrides=overrides)["run_id"]


def promote(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "model_orchestration.promote_flow", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


class Traffic:
    """One client posting records to the API without pause; every answer's run id, in order."""

    def __init__(self, url: str, record: dict[str, Any]) -> None:
        self.url, self.record = url, record
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            deadline = time.monotonic() + 600
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = session.post(f"{self.url}/predict", json=self.record, timeout=10)
                    if answer.status_code == 200:
                        self.answers.append((time.time(), answer.json()["model_run_id"]))
                    else:
                        self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                except requests.RequestException as error:
                    self.failures.append(repr(error))
                time.sleep(0.01)

    def first_answer_from(self, run_id: str, after: float, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # answers are stamped with the wall clock, as the audit log is
            found = [t for t, r in list(self.answers) if r == run_id and t >= after]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no answer from {run_id} within {timeout}s; last: {self.answers[-3:]}")

    def answers_after(self, moment: float, at_least: int, timeout: float) -> list[str]:
        """The run ids of the answers stamped after `moment`, once there are `at_least` of them (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            later = [r for t, r in list(self.answers) if t > moment]
            if len(later) >= at_least or time.monotonic() >= deadline:
                return later
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def kinesis_run_ids(settings: Settings, streams: Any, n: int, records: list[dict[str, Any]]) -> set[str]:
    client = aws.client("kinesis", settings)
    ids = [f"promo-{uuid.uuid4().hex}" for _ in range(n)]
    put_envelopes(client, streams.predictions, [{"request_id": i, "record": records[k]} for k, i in enumerate(ids)])
    found: dict[str, str] = {}

    def arrived() -> bool:
        found.update({r["request_id"]: r["model_run_id"] for r in read_stream(client, streams.results)})
        return all(i in found for i in ids)

    wait_until(arrived, 60, f"{n} Kinesis results")
    return {found[i] for i in ids}
