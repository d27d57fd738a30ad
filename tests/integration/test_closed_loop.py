"""The whole loop on real Prefect, MLflow and moto servers, every service as its own process:

v1 trained -> the gate makes it champion -> the API (2 workers) and the Kinesis consumer serve it (RUN_ID empty,
following the registry) -> the business simulator sends drifted traffic and each record's outcome a second later ->
the drift service sees the drift persist and starts a run of the served training deployment (RETRAIN_AUTO_PROMOTE)
-> v2 is trained, becomes challenger and goes through the gate, judged with v1 on the very same settled live rows ->
champion moves to v2 -> the API and the consumer switch to v2 in place, with no failed request.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.tracking import MlflowClient

from mlops import aws
from mlops.control_plane import prefect_auth
from mlops.init_aws import load_data
from mlops.promotion import AuditLog
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http
from tests.support.kinesis import make_streams
from tests.support.processes import TEST_ROWS
from tests.support.promotion import Traffic, kinesis_run_ids, promote, train_version

pytestmark = pytest.mark.integration

MODEL_NAME = "churn-model-promotion-test-loop"


@pytest.fixture(scope="module")
def platform(
    settings: Settings,
    service_env: dict[str, str],
    feature_snapshot: Any,
    sample_records: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("closed-loop")
    # a bucket of its own: the triggered run trains on a snapshot built from this loop's settled traffic
    bucket = f"closed-loop-{state.name[-6:]}".lower().replace("_", "-")
    own = Settings(_env_file=None, **{**settings.model_dump(), "s3_bucket": bucket})
    aws.ensure_bucket(aws.client("s3", own), bucket, own.aws_region)
    load_data(own, FeatureSpec.load(own.feature_spec), None, rows=TEST_ROWS, seed=7)
    streams = make_streams(aws.client("kinesis", settings))
    ports = {name: free_port() for name in ("api", "drift", "kinesis")}
    env = {
        **service_env,
        **streams.env(),
        "STATE_DIR": str(state),
        "PREDICTION_LOG_URI": f"sqlite:///{state / 'predictions.sqlite'}",
        "MODEL_NAME": MODEL_NAME,
        "RUN_ID": "",
        "MODEL_POLL_SECONDS": "1",
        "MAX_EVALS": "1",
        "TRAIN_THREADS": "1",
        "API_PORT": str(ports["api"]),
        "API_WORKERS": "2",
        "DRIFT_PORT": str(ports["drift"]),
        "DRIFT_SERVICE_URL": f"http://127.0.0.1:{ports['drift']}",
        "KINESIS_METRICS_PORT": str(ports["kinesis"]),
        "DRIFT_MIN_ROWS": "200",
        "DRIFT_WINDOW_SIZE": "400",
        "DRIFT_INTERVAL_SECONDS": "1",
        "RETRAIN_DRIFT_SHARE": "0.3",
        "RETRAIN_DRIFT_COMPUTATIONS": "2",
        "RETRAIN_AUTO_PROMOTE": "true",
        "PROMOTION_MIN_ROC_AUC": "0.5",
        "PROMOTION_MAX_BRIER": "0.5",  # drifted rows: the gate's job here is the comparison, not the floor
        "REALIZED_AUC_FLOOR": "0",  # this test drives the drift trigger; the decay trigger is test_retrain.py's
        "S3_BUCKET": bucket,
        "RETRAIN_MIN_PRODUCTION_ROWS": "50",  # the drifted, settled traffic by the time drift has persisted
        "PROMOTION_MIN_UPLIFT": "-0.2",  # judged on drifted rows, a retrained model may tie: not worse by 0.2
        "PROMOTION_MIN_OUTCOMES": "100",
        "OUTCOME_MIN_LABELS": "100",
    }
    python = str(VENV_BIN / "python")
    processes: list[subprocess.Popen[Any]] = []
    logs = state / "logs"
    try:
        v1 = train_version(own, state, MODEL_NAME)
        first = promote(env)
        assert "promote: promoted:" in first.stdout, first.stdout + first.stderr
        for name, module, health in (
            ("train-deployment", "model_orchestration.deployments", None),
            ("drift-service", "monitoring.evidently_service", f"http://127.0.0.1:{ports['drift']}/health"),
            ("predict-api", "server.api", f"http://127.0.0.1:{ports['api']}/health"),
            ("serve-kinesis", "server.kinesis", f"http://127.0.0.1:{ports['kinesis']}/metrics"),
        ):
            process = start_process([python, "-m", module], logs / f"{name}.log", env=env)
            processes.append(process)
            if health:
                wait_for_http(health, 180, process, logs / f"{name}.log")
        yield {"env": env, "v1": v1, "state": state, "streams": streams, "api": f"http://127.0.0.1:{ports['api']}",
               "logs": logs, "processes": processes}  # fmt: skip
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=30)


def tails(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))


def test_drift_retrains_and_the_gate_promotes_and_serving_follows(
    platform: dict[str, Any], settings: Settings, sample_records: list[dict[str, Any]]
) -> None:
    env, v1, api = platform["env"], platform["v1"], platform["api"]
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert requests.get(f"{api}/health", timeout=5).json()["model_run_id"] == v1
    assert kinesis_run_ids(settings, platform["streams"], 5, sample_records) == {v1}
    traffic = Traffic(api, sample_records[0])
    simulator = start_process(
        [sys.executable, "-m", "simulation_business.send_data_api", "--drift", "--batch", "20", "--interval", "0.2",
         "--url", f"{api}/predict", "--seed", "5", "--outcome-delay", "1"],
        platform["logs"] / "send-data-api.log",
        env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 420
        while True:  # drift -> trigger -> training run (served deployment) -> gate -> champion moves to v2
            champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
            if champion.run_id != v1:
                break
            assert time.monotonic() < deadline, "champion never moved:\n" + tails(platform["logs"])
            for process in platform["processes"]:
                assert process.poll() is None, tails(platform["logs"])
            time.sleep(2)
        v2 = champion.run_id
        moved = time.time()
        switched = traffic.first_answer_from(v2, moved - 5, timeout=60)
        later = traffic.answers_after(switched, at_least=20, timeout=30)  # the first v2 answer may be the newest
        assert later and set(later) == {v2}, "an answer from the old model after the first from the new one"
        deadline = time.monotonic() + 60
        while kinesis_run_ids(settings, platform["streams"], 5, sample_records) != {v2}:
            assert time.monotonic() < deadline, "the consumer never switched:\n" + tails(platform["logs"])
            time.sleep(1)
    finally:
        traffic.stop()
        stop_process(simulator)
    assert traffic.failures == [], traffic.failures[:5]
    # why it happened, as a person would find it: the trigger's run in Prefect, the gate's record in the audit log
    status = requests.get(f"http://127.0.0.1:{env['DRIFT_PORT']}/retrain", timeout=5).json()
    assert status["last"]["kind"] == "drift" and "drift share" in status["last"]["reason"]
    assert status["last"]["data"].startswith("new snapshot"), status["last"]  # it learned from production
    trained_on = client.get_run(v2).data.tags["data_hash"]
    assert trained_on in status["last"]["data"] and trained_on != client.get_run(v1).data.tags["data_hash"]
    flow_run = requests.get(
        f"{settings.prefect_api_url}/flow_runs/{status['last']['flow_run_id']}", auth=prefect_auth(settings), timeout=5
    ).json()
    assert "retrain-reason:drift" in flow_run["tags"] and flow_run["parameters"]["promote"] is True
    audit = AuditLog(Path(env["STATE_DIR"]) / "audit" / "promotions.jsonl")
    deadline = time.monotonic() + 30  # the gate writes its line right after moving the alias
    while not (found := [r for r in audit.records() if r["action"] == "promoted" and r["challenger"]["run_id"] == v2]):
        assert time.monotonic() < deadline, "no audit line for the promotion the registry shows"
        time.sleep(0.5)
    (promoted,) = found
    assert promoted["evidence"] == "settled outcomes" and promoted["rows"] == 100
    assert promoted["champion"]["run_id"] == v1 and promoted["champion"]["figures"]["roc_auc"] > 0
