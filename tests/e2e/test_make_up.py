"""The whole native platform as a user starts it: `make up`, a second `make up`, then `make down`.

Runs on free ports and a temporary state folder (settings from the environment), so it neither needs nor disturbs a
platform already running on the default ports.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mlops.settings import PROJECT_ROOT
from native.throwaway import free_port

pytestmark = pytest.mark.e2e

TRIALS = 3


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make(target: str, env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target, "RUNTIME=native", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("make-up-state")
    ports = {name: free_port() for name in ("moto", "mlflow", "prefect", "api", "kinesis", "drift", "prom", "www")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_"))}
    env.update(
        {
            "STATE_DIR": str(state),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['moto']}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "API_PORT": str(ports["api"]),
            "KINESIS_METRICS_PORT": str(ports["kinesis"]),
            "DRIFT_PORT": str(ports["drift"]),
            "DRIFT_SERVICE_URL": f"http://127.0.0.1:{ports['drift']}",
            "PROMETHEUS_PORT": str(ports["prom"]),
            "REPORTS_PORT": str(ports["www"]),
            "RUN_ID": "",
            "MAX_EVALS": str(TRIALS),
        }
    )
    env["_PORTS"] = json.dumps(ports)
    yield env
    make("down", env, timeout=120)


def test_make_up_trains_serves_and_answers_then_make_down_stops_everything(platform_env: dict[str, str]) -> None:
    ports = json.loads(platform_env["_PORTS"])
    first = make("up", platform_env)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-6000:]

    run_ids = re.findall(r"RUN_ID=([0-9a-f]{32})", first.stdout)
    assert run_ids, first.stdout[-3000:]
    run_id = run_ids[-1]
    answer = json.loads(first.stdout.strip().splitlines()[-1])
    assert answer["model_run_id"] == run_id and 0.0 <= answer["churn chance"] <= 1.0
    assert "curl -s -X POST" in first.stdout

    # `make up` runs every control plane authenticated with the secrets it made (STATE_DIR/secrets.env)
    import requests

    from mlops.local_secrets import read

    made = read(Path(platform_env["STATE_DIR"]) / "secrets.env")
    mlflow_url, prefect_api = platform_env["MLFLOW_TRACKING_URI"], platform_env["PREFECT_API_URL"]
    assert requests.get(f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401
    assert requests.post(f"{prefect_api}/deployments/filter", json={}, timeout=10).status_code == 401
    drift = platform_env["DRIFT_SERVICE_URL"]
    assert requests.post(f"{drift}/iterate/bank_churners", json=[], timeout=10).status_code == 401
    prefect_user = tuple(made["PREFECT_API_AUTH_STRING"].split(":", 1))
    os.environ["MLFLOW_TRACKING_USERNAME"] = made["MLFLOW_TRACKING_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = made["MLFLOW_TRACKING_PASSWORD"]

    client = MlflowClient(platform_env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name = 'churn-model'")
    assert len(versions) == 1 and versions[0].run_id == run_id
    parent = client.get_run(run_id)
    trials = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(trials) >= TRIALS
    mlflow.set_tracking_uri(platform_env["MLFLOW_TRACKING_URI"])
    assert mlflow.pyfunc.load_model(f"runs:/{run_id}/model") is not None

    # the platform's schedules are deployed: training (interval), daily batch (cron), drift reports and the
    # prediction log's archive (intervals)
    def deployments() -> dict[str, dict]:
        found = requests.post(f"{prefect_api}/deployments/filter", json={}, auth=prefect_user, timeout=10).json()
        return {d["name"]: d for d in found}

    deadline = time.monotonic() + 60
    expected = {"churn-training", "churn-batch-daily", "drift-reports", "prediction-log-retention"}
    while set(deployments()) < expected:
        assert time.monotonic() < deadline, f"deployments after make up: {sorted(deployments())}"
        time.sleep(1)
    for name in ("churn-training", "churn-batch-daily", "prediction-log-retention"):
        assert deployments()[name]["schedules"], f"{name} has no schedule"

    logs = Path(platform_env["STATE_DIR"]) / "logs"
    for program in ("moto", "mlflow", "prefect", "predict-api", "train-deployment", "batch-deployment"):
        assert (logs / f"{program}.log").exists(), f"no log for {program} in {logs}"

    second = make("up", platform_env)  # idempotent: nothing restarts, nothing retrains
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "already trained on the latest data" in second.stdout
    assert len(client.search_model_versions("name = 'churn-model'")) == 1

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    down = make("down", platform_env, timeout=120)
    assert down.returncode == 0, down.stderr
    still_open = [name for name, port in ports.items() if port_open(port)]
    assert still_open == [], f"ports still open after make down: {still_open}"
