"""Retraining that triggers itself, on the real Prefect, MLflow and moto servers: the training deployment is served
(`python -m model_orchestration.deployments`, as `make apply-model-train-flow` runs it); the drift service's trigger
sees the drift share stay high, starts one run through Prefect's REST API with the reason as its name and tag, the
run trains and registers a new `challenger`, and further drifted computations inside the cool-down start nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from mlflow import MlflowClient

from mlops.settings import Settings
from monitoring.evidently_service.retrain import RetrainTrigger
from native.throwaway import VENV_BIN, start_process, stop_process

pytestmark = pytest.mark.integration

MODEL_NAME = "churn-model-retrain-test"


def _runs_tagged(settings: Settings, tag: str) -> list[dict[str, Any]]:
    """Flow runs carrying `tag` (Prefect's REST filter)."""
    import requests

    from mlops.control_plane import prefect_auth

    answer = requests.post(
        f"{settings.prefect_api_url}/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": [tag]}}, "limit": 50, "sort": "ID_DESC"},
        auth=prefect_auth(settings),
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()


def _state(settings: Settings, flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings

    with temporary_settings(client_settings(settings)), get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).state


def test_sustained_drift_starts_one_training_run_then_stays_quiet(
    settings: Settings, service_env: dict[str, str], feature_snapshot: Any, tmp_path: Path
) -> None:
    env = {**service_env, "MAX_EVALS": "1", "TRAIN_THREADS": "1", "MODEL_NAME": MODEL_NAME}
    log = tmp_path / "train-deployment.log"
    server = start_process([str(VENV_BIN / "python"), "-m", "model_orchestration.deployments"], log, env=env)
    trigger_settings = settings.model_copy(
        update={
            "state_dir": tmp_path,
            "retrain_drift_share": 0.5,
            "retrain_drift_computations": 2,
            "retrain_cooldown_hours": 1.0,
            "retrain_min_production_rows": 10**9,  # trains on the session's snapshot (the next test covers production)
        }
    )
    trigger = RetrainTrigger(trigger_settings)
    tag = f"bank_churners-{tmp_path.name}"
    try:
        flow_run_id = None
        deadline = time.monotonic() + 120
        while flow_run_id is None:  # the deployment appears once the served process registered it
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the trigger never started a run:\n" + log.read_text()[-3000:]
            trigger.consecutive.clear()
            assert trigger.observe_drift(tag, 0.9) is None  # one drifted computation is not enough
            flow_run_id = trigger.observe_drift(tag, 0.9)
            if flow_run_id is None:
                time.sleep(2)
        (run,) = [r for r in _runs_tagged(settings, "retrain-reason:drift") if r["id"] == flow_run_id]
        assert "drift share 0.90 > RETRAIN_DRIFT_SHARE 0.5 for 2 computations" in run["name"]
        assert {"retrain", "retrain-reason:drift", tag} <= set(run["tags"])
        # the served deployment runs it: a new challenger is registered
        deadline = time.monotonic() + 300
        while not (state := _state(settings, flow_run_id)).is_final():
            assert time.monotonic() < deadline, f"flow run still {state.name}:\n{log.read_text()[-3000:]}"
            time.sleep(2)
        assert state.is_completed(), log.read_text()[-3000:]
        challenger = MlflowClient(settings.mlflow_tracking_uri).get_model_version_by_alias(MODEL_NAME, "challenger")
        assert challenger.run_id
        # still drifting, inside the cool-down: nothing more starts
        for _ in range(4):
            assert trigger.observe_drift(tag, 0.95) is None
        assert [r["id"] for r in _runs_tagged(settings, tag)] == [flow_run_id]
        assert trigger.status()["last"]["flow_run_id"] == flow_run_id
        assert trigger.status()["last"]["data"].startswith("fell back to the current snapshot")
    finally:
        stop_process(server, timeout=30)


def test_a_trigger_trains_on_production_rows_and_never_twice_on_the_same_snapshot(
    settings: Settings, service_env: dict[str, str], trained_run_id: str, tmp_path: Path
) -> None:
    """Enough settled production rows: the trigger builds a snapshot from them and the run it starts trains on it.
    Drift again with that model served: the same rows give the same snapshot, so nothing starts ("nothing new to
    learn"). Its own bucket, so the session's other tests keep their snapshot."""
    from datetime import UTC, datetime, timedelta

    from mlops import aws
    from mlops.data import clean, generate_bank_churners
    from mlops.feature_store import FeatureStore
    from mlops.init_aws import load_data
    from mlops.outcomes import Outcome
    from mlops.spec import FeatureSpec
    from mlops.stores.outcomes import SQLiteOutcomeStore
    from mlops.stores.prediction_log import SQLiteStore, make_entry

    bucket, model = f"retrain-production-{tmp_path.name[-8:]}".lower().replace("_", "-"), f"{MODEL_NAME}-production"
    log_uri = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    changes = {
        "s3_bucket": bucket,
        "state_dir": tmp_path / "first",
        "prediction_log_uri": log_uri,
        "retrain_drift_share": 0.5,
        "retrain_drift_computations": 1,
        "retrain_min_production_rows": 100,
        "model_name": model,
    }
    own = Settings(_env_file=None, **{**settings.model_dump(), **changes})  # validated, no cached location
    aws.ensure_bucket(aws.client("s3", own), bucket, own.aws_region)
    spec = FeatureSpec.load(own.feature_spec)
    base = load_data(own, spec, None, rows=600, seed=21)
    live = clean(generate_bank_churners(150, seed=22), spec)
    now = datetime.now(UTC)
    entries = [
        make_entry({c: row[c] for c in spec.feature_columns}, 0.5, trained_run_id, "http", f"prod-{i}",
                   now - timedelta(minutes=200 - i), customer_id=str(row[spec.id_column]))
        for i, row in live.iterrows()
    ]  # fmt: skip
    SQLiteStore(log_uri).write_many(entries)
    settled = SQLiteOutcomeStore(log_uri).ingest(
        [Outcome(e["request_id"], None, int(live.loc[i, "label"]), now) for i, e in enumerate(entries)]
    )
    assert settled.settled == 150

    env = {**service_env, "MAX_EVALS": "1", "TRAIN_THREADS": "1", "MODEL_NAME": model, "S3_BUCKET": bucket}
    log = tmp_path / "train-deployment.log"
    server = start_process([str(VENV_BIN / "python"), "-m", "model_orchestration.deployments"], log, env=env)
    try:
        trigger = RetrainTrigger(own)
        tag = f"production-{tmp_path.name}"
        deadline = time.monotonic() + 120
        while (flow_run_id := trigger.observe_drift(tag, 0.9, trained_run_id)) is None:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no run started: {trigger.last()}\n{log.read_text()[-3000:]}"
            trigger.state_path.unlink(missing_ok=True)  # the deployment was not registered yet: no cool-down
            time.sleep(2)
        latest = FeatureStore(aws.client("s3", own), own).latest(spec.name)
        assert latest.data_hash != base.data_hash
        assert latest.data_hash in trigger.last()["data"] and "150 settled production rows" in trigger.last()["data"]
        deadline = time.monotonic() + 300
        while not (state := _state(settings, flow_run_id)).is_final():
            assert time.monotonic() < deadline, f"flow run still {state.name}:\n{log.read_text()[-3000:]}"
            time.sleep(2)
        assert state.is_completed(), log.read_text()[-3000:]
        client = MlflowClient(settings.mlflow_tracking_uri)
        trained = client.get_model_version_by_alias(model, "challenger").run_id
        assert client.get_run(trained).data.tags["data_hash"] == latest.data_hash  # it learned from production

        # drifting again, the new model served, no new outcomes: nothing new to learn, no run, the reason kept
        again = RetrainTrigger(Settings(_env_file=None, **{**own.model_dump(), "state_dir": tmp_path / "second"}))
        assert again.observe_drift(tag, 0.95, trained) is None
        assert again.last()["data"].startswith(f"nothing new to learn: the served model (run {trained})")
        assert [r["id"] for r in _runs_tagged(settings, tag)] == [flow_run_id]
        assert len(client.search_model_versions(f"name = '{model}'")) == 1
    finally:
        stop_process(server, timeout=30)
