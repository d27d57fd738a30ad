"""Trials logged beside the fits: every one arrives, with its own times; a logging failure is raised, not lost."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from model_orchestration.trial_logging import Trial, TrialLogger


class RecordingClient:
    """Stands in for MlflowClient's three calls (unit of the adapter; the flow's tests use a real MLflow)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def create_run(self, experiment_id: str, start_time: int, tags: dict[str, str], run_name: str) -> Any:
        self.gate.wait(5)
        if self.fail_on is not None and tags["trial"] == str(self.fail_on):
            raise ConnectionError("MLflow went away")
        run_id = f"run-{len(self.runs)}"
        self.runs[run_id] = {"start": start_time, "tags": tags, "name": run_name}
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id: str, params: list[Any], metrics: list[Any]) -> None:
        self.runs[run_id]["params"] = {p.key: p.value for p in params}
        self.runs[run_id]["metrics"] = {m.key: m.value for m in metrics}

    def set_terminated(self, run_id: str, end_time: int) -> None:
        self.runs[run_id]["end"] = end_time


def _trial(n: int) -> Trial:
    return Trial(n, {"max_depth": 3 + n}, {"valid_auc": 0.8 + n / 100}, 1_000 + n, 2_000 + n)


def test_every_trial_is_a_child_run_with_its_own_times() -> None:
    client = RecordingClient()
    client.gate.clear()  # MLflow slow: submitting must not wait for it
    logger = TrialLogger(client, "1", "parent")
    for n in range(5):
        logger.submit(_trial(n))
    assert client.runs == {}
    client.gate.set()
    assert logger.close() == 5
    assert [r["name"] for r in client.runs.values()] == [f"trial-{n:03d}" for n in range(5)]
    first = client.runs["run-0"]
    assert first["tags"] == {"mlflow.parentRunId": "parent", "trial": "0", "kind": "trial"}
    assert (first["start"], first["end"], first["params"], first["metrics"]) == (
        1000,
        2000,
        {"max_depth": "3"},
        {"valid_auc": 0.8},
    )


def test_a_logging_failure_is_raised_by_close_and_stops_further_submits() -> None:
    client = RecordingClient(fail_on=1)
    logger = TrialLogger(client, "1", "parent")
    logger.submit(_trial(0))
    logger.submit(_trial(1))
    with pytest.raises(RuntimeError, match="MLflow went away"):
        logger.close()
    with pytest.raises(RuntimeError, match="logging trials to MLflow failed"):
        logger.submit(_trial(2))
