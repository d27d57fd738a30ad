"""Promotion on real Prefect, MLflow and moto servers, with gunicorn's API and the Kinesis consumer following the
registry (RUN_ID empty, MODEL_POLL_SECONDS=1) under steady traffic.

One registered model of its own (MODEL_NAME), so the session's other tests keep their aliases:
v1 trained -> the gate (no champion: absolute thresholds, on v1's test set) promotes it -> both servers serve it;
v2 trained -> refused (PROMOTION_MIN_UPLIFT 0.5) -> still v1; outcomes arrive for live predictions -> manual
approval: the gate judges both on the same settled rows, waits, `--approve` moves champion -> the API and the
consumer switch to v2 with no failed request (time from the alias move to the first v2 answer printed);
`--rollback` -> back to v1. Every decision is in the audit log and on the versions' MLflow tags.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.tracking import MlflowClient

from mlops import aws
from mlops.promotion import AuditLog
from mlops.settings import Settings
from tests.conftest import TEST_TRIALS, VENV_BIN, free_port, start_process, stop_process, wait_for_http
from tests.integration.test_http_api import ApiServer, start_api
from tests.integration.test_kinesis_serving import make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

MODEL_NAME = "churn-model-promotion-test"


def train_version(settings: Settings, state: Path, model_name: str = MODEL_NAME) -> str:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from model_orchestration.train_flow import model_tuning_and_uploading

    overrides = settings.flow_overrides(state_dir=str(state), run_id=None, train_threads=1, model_name=model_name)
    with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
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

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture(scope="module")
def loop(
    settings: Settings,
    service_env: dict[str, str],
    feature_snapshot: Any,
    sample_records: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("promotion")
    streams = make_streams(aws.client("kinesis", settings))
    env = {
        **service_env,
        **streams.env(),
        "STATE_DIR": str(state),
        "MODEL_NAME": MODEL_NAME,
        "RUN_ID": "",
        "MODEL_POLL_SECONDS": "1",
        # the API's own log (start_api puts it under state/api): outcomes posted to it are what the gate reads
        "PREDICTION_LOG_URI": f"sqlite:///{state / 'api' / 'predictions.sqlite'}",
        "PROMOTION_MIN_ROC_AUC": "0.6",
        "PROMOTION_MAX_BRIER": "0.25",
        "PROMOTION_MIN_OUTCOMES": "150",
    }
    v1 = train_version(settings, state)
    first = promote(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "promote: promoted:" in first.stdout and "challenger test set" in first.stdout, first.stdout
    api = start_api(env, state / "api", workers=2, **{k: env[k] for k in ("MODEL_NAME", "MODEL_POLL_SECONDS")})
    kinesis_port = free_port()
    log = state / "logs" / "serve-kinesis.log"
    consumer = start_process(
        [sys.executable, "-m", "server.kinesis"], log, env={**env, "KINESIS_METRICS_PORT": str(kinesis_port)}
    )
    wait_for_http(f"http://127.0.0.1:{kinesis_port}/metrics", 180, consumer, log)
    traffic = Traffic(api.url, sample_records[0])
    try:
        yield {"env": env, "api": api, "v1": v1, "state": state, "traffic": traffic, "streams": streams, "log": log}
    finally:
        traffic.stop()
        stop_process(consumer, timeout=30)
        stop_process(api.process, timeout=30)


def champion_run(settings: Settings) -> str:
    return MlflowClient(settings.mlflow_tracking_uri).get_model_version_by_alias(MODEL_NAME, "champion").run_id


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


# The tests below are the loop's steps, in order, on one module's servers (pytest runs a file top to bottom).
def test_the_first_model_passes_the_gate_and_is_served(
    loop: dict[str, Any], settings: Settings, sample_records: list[dict[str, Any]]
) -> None:
    api_server: ApiServer = loop["api"]
    assert champion_run(settings) == loop["v1"]
    assert requests.get(f"{api_server.url}/health", timeout=5).json()["model_run_id"] == loop["v1"]
    assert kinesis_run_ids(settings, loop["streams"], 5, sample_records) == {loop["v1"]}


def test_a_challenger_that_is_not_better_enough_is_refused(loop: dict[str, Any], settings: Settings) -> None:
    loop["v2"] = v2 = train_version(settings, loop["state"])
    refused = promote({**loop["env"], "PROMOTION_MIN_UPLIFT": "0.5"})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "promote: refused:" in refused.stdout and "PROMOTION_MIN_UPLIFT" in refused.stdout
    assert champion_run(settings) == loop["v1"]
    version = MlflowClient(settings.mlflow_tracking_uri).get_model_version_by_alias(MODEL_NAME, "challenger")
    assert version.run_id == v2
    assert version.tags["promotion.challenger.decision"] == "refused"
    assert "REFUSED" in version.description
    loop["v2_version"] = version.version


def test_manual_approval_judges_on_live_rows_waits_and_serving_follows(
    loop: dict[str, Any], settings: Settings, sample_records: list[dict[str, Any]]
) -> None:
    env, traffic, v2, version = loop["env"], loop["traffic"], loop["v2"], loop["v2_version"]
    api_server: ApiServer = loop["api"]
    # outcomes for 200 live predictions: the gate judges both models on those very rows
    ids = [f"live-{uuid.uuid4().hex}" for _ in range(200)]
    with requests.Session() as session:
        for request_id, record in zip(ids, sample_records, strict=True):
            answer = session.post(
                f"{api_server.url}/predict", json=record, headers={"X-Request-ID": request_id}, timeout=10
            )
            assert answer.status_code == 200
    time.sleep(1.5)  # the prediction log writes in the background
    from mlops.data import clean, generate_bank_churners

    truth = clean(generate_bank_churners(200, seed=99), settings_spec(settings))["label"].tolist()
    outcomes = [
        {"request_id": request_id, "label": "Attrited Customer" if y else "Existing Customer"}
        for request_id, y in zip(ids, truth, strict=True)
    ]
    settled = requests.post(f"{api_server.url}/outcomes", json=outcomes, timeout=30).json()
    assert settled["settled"] == 200, settled

    pending = promote({**env, "PROMOTION_APPROVAL": "manual", "PROMOTION_MIN_UPLIFT": "-1"})
    assert pending.returncode == 0, pending.stdout + pending.stderr
    assert "pending approval" in pending.stdout and "150 rows of the settled outcomes" in pending.stdout
    assert f"make promote APPROVE={version}" in pending.stdout
    assert champion_run(settings) == loop["v1"]  # manual: nothing moves before the approval

    approved = promote(env, "--approve", version)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    moved_at = moment_of(env, "approved")
    assert champion_run(settings) == v2
    switched = traffic.first_answer_from(v2, moved_at)
    print(f"\nalias moved -> first answer from the new model: {switched - moved_at:.2f} s (MODEL_POLL_SECONDS=1)")
    later = [r for t, r in list(traffic.answers) if t > switched]
    assert later and set(later) == {v2}, "an old answer after the first new one"
    wait_until(lambda: kinesis_run_ids(settings, loop["streams"], 5, sample_records) == {v2}, 60, "consumer on v2")
    record = [r for r in AuditLog(Path(env["STATE_DIR"]) / "audit" / "promotions.jsonl").records()][2]
    assert record["action"] == "pending approval"
    assert record["evidence"] == "settled outcomes" and record["rows"] == 150
    assert record["champion"]["figures"]["roc_auc"] > 0  # both scored on the same rows


def test_rollback_points_champion_back_and_serving_follows(loop: dict[str, Any], settings: Settings) -> None:
    env, traffic = loop["env"], loop["traffic"]
    rolled = promote(env, "--rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    back_at = moment_of(env, "rolled back")
    assert champion_run(settings) == loop["v1"]
    traffic.first_answer_from(loop["v1"], back_at)
    assert traffic.failures == [], traffic.failures[:5]
    actions = [r["action"] for r in AuditLog(Path(env["STATE_DIR"]) / "audit" / "promotions.jsonl").records()]
    assert actions == ["promoted", "refused", "pending approval", "approved", "rolled back"]


def test_approving_a_version_that_is_not_pending_is_refused(loop: dict[str, Any]) -> None:
    answer = promote(loop["env"], "--approve", "999")
    assert answer.returncode == 2
    assert "is not waiting for approval (never judged)" in answer.stderr


def moment_of(env: dict[str, str], action: str) -> float:
    """When the audit log says champion moved (wall clock, seconds)."""
    from datetime import datetime

    records = AuditLog(Path(env["STATE_DIR"]) / "audit" / "promotions.jsonl").records()
    last = [r for r in records if r["action"] == action][-1]
    return datetime.fromisoformat(last["at"]).timestamp()


def settings_spec(settings: Settings) -> Any:
    from mlops.spec import FeatureSpec

    return FeatureSpec.load(settings.feature_spec)
