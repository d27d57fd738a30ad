"""The promotion gate's rules, its audit log, and the registry follower's timing and failure handling."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops import registry
from mlops.promotion import AuditLog, Figures, Gate, decide
from mlops.settings import load_settings
from server.registry_follower import RegistryFollower

GATE = Gate(min_roc_auc=0.7, max_brier=0.25, min_uplift=0.01)


def figures(auc: float, brier: float = 0.1) -> Figures:
    return Figures(roc_auc=auc, brier=brier, pr_auc=0.5, log_loss=0.3)


def test_the_first_model_passes_on_absolute_thresholds_alone() -> None:
    assert decide(GATE, figures(0.8), None, same_spec=False) == (True, [])
    passed, reasons = decide(GATE, figures(0.65, brier=0.3), None, same_spec=True)
    assert not passed
    assert reasons == ["ROC AUC 0.6500 < PROMOTION_MIN_ROC_AUC 0.7", "Brier 0.3000 > PROMOTION_MAX_BRIER 0.25"]


def test_uplift_and_spec_rules() -> None:
    assert decide(GATE, figures(0.85), figures(0.83), same_spec=True) == (True, [])
    passed, reasons = decide(GATE, figures(0.835), figures(0.83), same_spec=True)
    assert not passed and "uplift +0.0050" in reasons[0]
    passed, reasons = decide(GATE, figures(0.9), figures(0.8), same_spec=False)
    assert not passed and "feature spec differs" in reasons[0]
    allowed = Gate(0.7, 0.25, 0.01, allow_spec_change=True)
    assert decide(allowed, figures(0.9), figures(0.8), same_spec=False) == (True, [])


def test_the_audit_log_only_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "promotions.jsonl")
    log.append({"action": "promoted", "n": 1})
    log.append({"action": "rolled back", "n": 2})
    assert [r["n"] for r in log.records()] == [1, 2]
    assert (tmp_path / "audit" / "promotions.jsonl").read_text().count("\n") == 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_follower_checks_on_its_interval_and_never_overrides_a_pinned_run(monkeypatch: Any) -> None:
    from mlops import registry

    answers = iter([("run-a", "alias"), ("run-b", "alias 'champion'"), ("run-b", "alias 'champion'")])
    monkeypatch.setattr(registry, "check_mlflow", lambda *a, **k: None)
    monkeypatch.setattr(registry, "resolve_run_id", lambda settings: next(answers))
    switched: list[str] = []
    clock = Clock()
    follower = RegistryFollower(
        load_settings("local", run_id=None, model_poll_seconds=5), "run-a", lambda r, w: switched.append(r), clock
    )
    assert not follower.maybe_check()  # not due yet
    clock.now = 5
    assert not follower.maybe_check()  # run-a: unchanged
    clock.now = 7
    assert not follower.maybe_check()  # not due
    clock.now = 10
    assert follower.maybe_check() and switched == ["run-b"] and follower.current == "run-b"
    clock.now = 15
    assert not follower.maybe_check()
    pinned = RegistryFollower(load_settings("local", run_id="a" * 32), "a" * 32, lambda r, w: switched.append(r), clock)
    clock.now = 100
    assert not pinned.enabled and not pinned.maybe_check()


def test_the_follower_keeps_serving_when_mlflow_is_down(monkeypatch: Any, caplog: pytest.LogCaptureFixture) -> None:
    from mlops import registry
    from mlops.aws import ServiceUnavailable

    def down(*_: Any, **__: Any) -> None:
        raise ServiceUnavailable("MLflow is unreachable at MLFLOW_TRACKING_URI=http://x")

    monkeypatch.setattr(registry, "check_mlflow", down)
    clock = Clock()
    follower = RegistryFollower(
        load_settings("local", run_id=None, model_poll_seconds=1), "run-a", lambda r, w: None, clock
    )
    for step in range(1, 4):
        clock.now = step
        assert not follower.maybe_check()
    assert follower.current == "run-a"
    warnings = [r for r in caplog.records if "registry not checked" in r.getMessage()]
    assert len(warnings) == 1 and "MLFLOW_TRACKING_URI" in warnings[0].getMessage()


class AliasClient:
    """get_model_version_by_alias as MLflow's REST client answers it: a version, "not found", or a failure."""

    def __init__(self, answers: dict[str, Any], models: list[str] | None = None) -> None:
        self.answers = answers
        self.models = models or []

    def search_registered_models(self, filter_string: str) -> list[str]:
        return [m for m in self.models if f"'{m}'" in filter_string]

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        answer = self.answers[alias]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_only_a_missing_alias_falls_back_to_the_challenger_and_an_mlflow_error_is_raised() -> None:
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        PERMISSION_DENIED,
        RESOURCE_DOES_NOT_EXIST,
        TEMPORARILY_UNAVAILABLE,
    )

    settings = load_settings("local", run_id=None)
    challenger = SimpleNamespace(run_id="c" * 32, version="2")
    missing = MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE)
    client = AliasClient({"champion": missing, "challenger": challenger})
    assert registry.resolve_run_id(settings, client)[0] == "c" * 32  # type: ignore[arg-type]
    no_model = MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST)
    assert registry.alias_version(AliasClient({"champion": no_model}), "x", "champion") is None
    # MLflow's basic-auth app answers 403 for a model that does not exist yet: absent; for one that exists: raised
    denied = MlflowException("Permission denied", error_code=PERMISSION_DENIED)
    assert registry.alias_version(AliasClient({"champion": denied}), "x", "champion") is None
    with pytest.raises(MlflowException):
        registry.alias_version(AliasClient({"champion": denied}, models=["x"]), "x", "champion")
    # a 503 (or any other failure) while the champion is asked for: never "no champion", so never the challenger
    blip = MlflowException("API request failed with error code 503", error_code=TEMPORARILY_UNAVAILABLE)
    with pytest.raises(MlflowException):
        registry.resolve_run_id(settings, AliasClient({"champion": blip, "challenger": challenger}))  # type: ignore[arg-type]


def test_an_mlflow_503_during_a_follower_poll_keeps_the_served_model(monkeypatch: Any) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    blip = MlflowException("API request failed with error code 503", error_code=TEMPORARILY_UNAVAILABLE)
    challenger = type("V", (), {"run_id": "c" * 32, "version": "2"})()
    client = AliasClient({"champion": blip, "challenger": challenger})
    monkeypatch.setattr(registry, "check_mlflow", lambda uri, timeout=2: None)
    monkeypatch.setattr(registry, "MlflowClient", lambda uri: client)
    switched: list[str] = []
    now = [0.0]
    follower = RegistryFollower(
        load_settings("local", run_id=None, model_poll_seconds=1), "a" * 32, lambda r, w: switched.append(r),
        lambda: now[0],
    )  # fmt: skip
    now[0] = 5.0
    assert follower.maybe_check() is False
    assert switched == [] and follower.current == "a" * 32
    assert "503" in follower.problems()[0]


class RacyRegistry:
    """An alias store whose reads are slow, so two unguarded movers would both see the old champion."""

    def __init__(self, champion: str) -> None:
        self.champion = champion
        self.moves: list[str] = []

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        seen = self.champion
        time.sleep(0.05)
        return type("V", (), {"version": seen, "run_id": "r" + seen})()

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.champion = version
        self.moves.append(version)


def test_two_concurrent_promotions_move_champion_once_and_the_other_is_stale(tmp_path: Path) -> None:
    from mlops.promoting import move_champion

    settings = load_settings("local", state_dir=tmp_path)
    client = RacyRegistry("1")
    answers: dict[str, str | None] = {}

    def promote(to_version: str) -> None:
        answers[to_version] = move_champion(settings, client, "churn-model", to_version, expected="1")

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("2", "3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(client.moves) == 1, client.moves  # compare and set: exactly one moved it
    winner = client.moves[0]
    loser = "3" if winner == "2" else "2"
    assert answers[winner] is None and answers[loser] == winner  # the other learns who is champion now
    assert move_champion(settings, client, "churn-model", "4", expected=None) == winner  # no champion expected


def test_the_audit_log_rotates_and_still_reads_every_kept_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "promotions.jsonl", max_bytes=200, keep=2)
    for i in range(12):
        log.append({"action": "promoted", "n": i, "pad": "x" * 40})
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert files == ["promotions.jsonl", "promotions.jsonl.1", "promotions.jsonl.2"]
    kept = [r["n"] for r in log.records()]
    assert kept == sorted(kept) and kept[-1] == 11 and len(kept) < 12  # oldest beyond `keep` files are gone
    assert all((tmp_path / "audit" / name).stat().st_size < 200 + 100 for name in files)
