"""The retraining trigger's rules: N consecutive drifted computations, the realized-AUC floor, the cool-down (kept
across restarts), and a dead Prefect that only postpones (the live path: tests/integration/test_retrain_trigger.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.settings import load_settings
from monitoring.evidently_service.retrain import RetrainTrigger


class Runs:
    def __init__(self, fail: bool = False) -> None:
        self.started: list[tuple[str, list[str]]] = []
        self.fail = fail

    def __call__(self, name: str, tags: list[str]) -> str:
        if self.fail:
            raise ConnectionError("Prefect unreachable at PREFECT_API_URL=http://127.0.0.1:9/api")
        self.started.append((name, tags))
        return f"flow-run-{len(self.started)}"


def make(tmp_path: Path, runs: Runs, now: list[float], **overrides: Any) -> RetrainTrigger:
    settings = load_settings(
        "local", state_dir=tmp_path, retrain_drift_share=0.5, retrain_drift_computations=3, **overrides
    )
    return RetrainTrigger(settings, runs, clock=lambda: now[0], prepare=lambda run_id: (True, "the current snapshot"))


def test_drift_must_persist_for_n_computations_then_one_run_per_cooldown(tmp_path: Path) -> None:
    runs, now = Runs(), [1000.0]
    trigger = make(tmp_path, runs, now, retrain_cooldown_hours=1)
    assert trigger.observe_drift("ds", 0.9) is None
    assert trigger.observe_drift("ds", 0.2) is None  # broken streak
    assert [trigger.observe_drift("ds", 0.8) for _ in range(3)] == [None, None, "flow-run-1"]
    name, tags = runs.started[0]
    assert "drift share 0.80 > RETRAIN_DRIFT_SHARE 0.5 for 3 computations" in name
    assert "retrain-reason:drift" in tags
    # still drifting, inside the cool-down: quiet, even for a new process (the last trigger is on disk)
    assert [trigger.observe_drift("ds", 0.9) for _ in range(5)] == [None] * 5
    restarted = make(tmp_path, runs, now, retrain_cooldown_hours=1)
    assert [restarted.observe_drift("ds", 0.9) for _ in range(4)] == [None] * 4
    assert restarted.last()["flow_run_id"] == "flow-run-1" and len(runs.started) == 1
    now[0] += 3601  # cool-down over
    assert restarted.observe_drift("ds", 0.9) == "flow-run-2"


def test_realized_auc_below_the_floor_triggers(tmp_path: Path) -> None:
    runs, now = Runs(), [0.0]
    trigger = make(tmp_path, runs, now, realized_auc_floor=0.7)
    assert trigger.observe_performance("ds", "run-a", 0.75) is None
    assert trigger.observe_performance("ds", "run-a", 0.55) == "flow-run-1"
    assert "realized ROC AUC 0.550 of run run-a < REALIZED_AUC_FLOOR 0.7" in runs.started[0][0]


def test_a_dead_prefect_postpones_and_off_means_off(tmp_path: Path) -> None:
    runs, now = Runs(fail=True), [0.0]
    trigger = make(tmp_path, runs, now, realized_auc_floor=0.7)
    assert trigger.observe_performance("ds", "run-a", 0.1) is None
    assert trigger.last() is None  # not recorded: the next computation tries again
    off = make(tmp_path / "off", Runs(), now, realized_auc_floor=0.7, retrain_triggers=False)
    assert off.observe_performance("ds", "run-a", 0.1) is None and not off.status()["enabled"]


def test_nothing_new_to_learn_starts_nothing_and_is_recorded_for_the_cooldown(tmp_path: Path) -> None:
    runs, now = Runs(), [0.0]
    settings = load_settings(
        "local", state_dir=tmp_path, retrain_drift_share=0.5, retrain_drift_computations=1, retrain_cooldown_hours=1
    )
    asked: list[str | None] = []

    def prepare(run_id: str | None) -> tuple[bool, str]:
        asked.append(run_id)
        return False, f"nothing new to learn: the served model (run {run_id}) was trained on snapshot abc"

    trigger = RetrainTrigger(settings, runs, clock=lambda: now[0], prepare=prepare)
    assert trigger.observe_drift("ds", 0.9, "run-a") is None
    assert runs.started == [] and asked == ["run-a"]
    assert trigger.last()["data"].startswith("nothing new to learn") and trigger.last()["flow_run_id"] is None
    assert trigger.observe_drift("ds", 0.9, "run-a") is None and asked == ["run-a"]  # not asked again at once
    now[0] += 601  # outcomes may have settled since: looked at again well before the 1 h cool-down
    assert trigger.observe_drift("ds", 0.9, "run-a") is None and asked == ["run-a", "run-a"]
