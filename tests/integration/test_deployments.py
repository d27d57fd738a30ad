"""`make apply-model-train-flow`, natively: the training deployment served on its interval schedule, and `trigger`
starting one run now, which trains and registers a model through the real Prefect, MLflow and moto servers.

The run registers under its own model name, so the session's `churn-model` and its aliases stay as other tests
expect them.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from mlflow import MlflowClient

from mlops.settings import Settings
from model_orchestration.deployments import FULL_NAME
from native.throwaway import VENV_BIN, start_process, stop_process

pytestmark = pytest.mark.integration

MODEL_NAME = "churn-model-deployment-test"
INTERVAL_HOURS = 6


def _flow_run_state(settings: Settings, flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings

    with temporary_settings(client_settings(settings)), get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).state


def _schedules(settings: Settings) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings

    with temporary_settings(client_settings(settings)), get_client(sync_client=True) as client:
        return list(client.read_deployment_by_name(FULL_NAME).schedules)


def test_served_training_deployment_is_scheduled_and_a_triggered_run_registers_a_model(
    settings: Settings, service_env: dict[str, str], feature_snapshot: Any, tmp_path: Path
) -> None:
    env = {
        **service_env,
        "MAX_EVALS": "1",
        "TRAIN_THREADS": "1",
        "MODEL_NAME": MODEL_NAME,
        "TRAIN_INTERVAL_HOURS": str(INTERVAL_HOURS),
    }
    python = str(VENV_BIN / "python")
    log = tmp_path / "train-deployment.log"
    server = start_process([python, "-m", "model_orchestration.deployments", "--env", "local"], log, env=env)
    try:
        trigger = subprocess.run(
            [python, "-m", "model_orchestration.deployments", "--env", "local", "trigger", "--wait", "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-2000:] + log.read_text()[-3000:]
        found = re.search(rf"started flow run (\S+) of {re.escape(FULL_NAME)}: (\S+)", trigger.stdout)
        assert found, trigger.stdout
        flow_run_id, url = found.groups()
        assert url.startswith(settings.prefect_api_url.removesuffix("/api")) and url.endswith(flow_run_id)

        # the deployment may already exist from another test's process (same name, another interval): wait until
        # this process's registration has replaced it
        deadline = time.monotonic() + 60
        schedules = _schedules(settings)
        while not (schedules and schedules[0].schedule.interval == timedelta(hours=INTERVAL_HOURS)):
            assert time.monotonic() < deadline, f"schedules {schedules}; log:\n{log.read_text()[-3000:]}"
            time.sleep(1)
            schedules = _schedules(settings)
        assert len(schedules) == 1 and schedules[0].active

        deadline = time.monotonic() + 300
        state = _flow_run_state(settings, flow_run_id)
        while not state.is_final():
            assert time.monotonic() < deadline, f"flow run still {state.name}; log:\n{log.read_text()[-3000:]}"
            assert server.poll() is None, f"the deployment process died; log:\n{log.read_text()[-3000:]}"
            time.sleep(1)
            state = _flow_run_state(settings, flow_run_id)
        assert state.is_completed(), f"{state.name}: {state.message}; log:\n{log.read_text()[-3000:]}"
    finally:
        stop_process(server, timeout=30)

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    run = client.get_run(version.run_id)
    assert run.data.tags.get("data_hash") == feature_snapshot.data_hash
    assert "test_roc_auc" in run.data.metrics
    trials = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == 1  # MAX_EVALS=1 from the deployment process's environment
    assert version.run_id in log.read_text()  # the run's log ends by naming the RUN_ID
