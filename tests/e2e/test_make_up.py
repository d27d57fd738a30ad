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
    names = ("moto", "mlflow", "prefect", "api", "api-replica", "kinesis", "drift", "prom", "www")
    ports = {name: free_port() for name in names}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_"))}
    env.update(
        {
            "STATE_DIR": str(state),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['moto']}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "API_PORT": str(ports["api"]),
            "API_REPLICA_PORT": str(ports["api-replica"]),
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
    expected = {"churn-training", "churn-batch-daily", "drift-reports", "prediction-log-retention", "platform-backup"}
    expected |= {"trial-run-retention"}
    while set(deployments()) < expected:
        assert time.monotonic() < deadline, f"deployments after make up: {sorted(deployments())}"
        time.sleep(1)
    for name in ("churn-training", "churn-batch-daily", "prediction-log-retention", "trial-run-retention"):
        assert deployments()[name]["schedules"], f"{name} has no schedule"

    logs = Path(platform_env["STATE_DIR"]) / "logs"
    programs = ("moto", "mlflow", "prefect", "predict-api-0", "api-gateway", "train-deployment", "batch-deployment")
    for program in programs:
        assert (logs / f"{program}.log").exists(), f"no log for {program} in {logs}"

    # KINESIS_CONSUMERS (2) consumers under supervisord form one group: one lease each of the two shards, in the
    # DynamoDB table, under their stable member ids; each serves its metrics on its own port
    import boto3

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=platform_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    members = {f"{socket.gethostname()}-kinesis-{i}" for i in range(2)}
    deadline = time.monotonic() + 60
    while True:
        items = dynamodb.scan(TableName="kinesis-consumer-leases")["Items"]
        owners = sorted(item.get("leaseOwner", {}).get("S", "-") for item in items)
        if set(owners) == members and len(owners) == 2:
            break
        assert time.monotonic() < deadline, f"lease owners {owners}, expected one shard each for {members}"
        time.sleep(1)
    for i in range(2):
        assert (logs / f"serve-kinesis-{i}.log").exists()
        assert requests.get(f"http://127.0.0.1:{ports['kinesis'] + i}/metrics", timeout=10).ok

    second = make("up", platform_env)  # idempotent: nothing restarts, nothing retrains
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "already trained on the latest data" in second.stdout
    assert len(client.search_model_versions("name = 'churn-model'")) == 1

    check_backup_reset_restore(platform_env, run_id)

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    down = make("down", platform_env, timeout=120)
    assert down.returncode == 0, down.stderr
    still_open = [name for name, port in {**ports, "kinesis-1": ports["kinesis"] + 1}.items() if port_open(port)]
    assert still_open == [], f"ports still open after make down: {still_open}"


def _state_counts(state: Path) -> dict[str, int]:
    import sqlite3

    counts = {}
    for name in ("predictions.sqlite", "online.sqlite"):
        with sqlite3.connect(state / name) as connection:
            found = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            tables = sorted(found & {"predictions", "outcomes", "settlements", "online_features"})
            counts |= {f"{name}:{t}": connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    return counts


def check_backup_reset_restore(env: dict[str, str], run_id: str) -> None:
    """`make backup` while it runs -> `make reset_all` (state and the in-memory S3 gone) -> `make restore` ->
    `make up`: the same registered models and aliases, prediction, settlement and online-store counts, and the
    same model served, without training again."""
    import requests

    from mlops.local_secrets import read

    state = Path(env["STATE_DIR"])
    backups = state.parent / "make-up-backups"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])

    def registry() -> tuple[list[tuple[str, str]], dict[str, str]]:
        versions = sorted((v.version, v.run_id) for v in client.search_model_versions("name = 'churn-model'"))
        return versions, dict(client.get_registered_model("churn-model").aliases)

    before = registry(), _state_counts(state)
    assert before[1]["predictions.sqlite:predictions"] > 0 and before[1]["online.sqlite:online_features"] > 0
    taken = make("backup", env, f"TO={backups}")
    assert taken.returncode == 0, (taken.stdout + taken.stderr)[-4000:]
    stamp = re.findall(r"backup: \S+/(\d{8}T\d{6}Z) ", taken.stdout)[-1]
    assert (backups / stamp / "manifest.json").exists() and not (backups / stamp / "state" / "logs").exists()

    reset = make("reset_all", env, timeout=180)
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert not (state / "predictions.sqlite").exists()
    restored = make("restore", env, f"FROM={backups / stamp}", timeout=300)
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-4000:]
    refused = make("restore", env, f"FROM={backups / stamp}", timeout=300)  # once more: state is there now
    assert refused.returncode != 0 and "FORCE=1" in refused.stderr, refused.stderr[-2000:]
    again = make("up", env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    assert "already trained on the latest data" in again.stdout  # the restored snapshot and runs: no retraining
    secrets = read(state / "secrets.env")  # the restored ones: the databases' users were made with them
    os.environ["MLFLOW_TRACKING_USERNAME"] = secrets["MLFLOW_TRACKING_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = secrets["MLFLOW_TRACKING_PASSWORD"]
    after = registry(), _state_counts(state)
    assert after[0] == before[0]
    # make up's smoke request after the restore logged one more prediction; nothing else changed
    logged = "predictions.sqlite:predictions"
    assert {k: v for k, v in after[1].items() if k != logged} == {k: v for k, v in before[1].items() if k != logged}
    assert after[1][logged] >= before[1][logged]
    health = requests.get(f"http://127.0.0.1:{env['API_PORT']}/health", timeout=10).json()
    assert health["model_run_id"] == run_id, health
