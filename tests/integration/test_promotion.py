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

import fcntl
import os
import subprocess
import sys
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
from mlops.settings import PROJECT_ROOT, Settings
from native.throwaway import free_port, start_process, stop_process, wait_for_http
from tests.support.api import ApiServer, start_api
from tests.support.kinesis import make_streams, wait_until
from tests.support.promotion import MODEL_NAME, Traffic, kinesis_run_ids, promote, train_version

pytestmark = pytest.mark.integration


def registered_again(settings: Settings, run_id: str, model: str) -> str:
    """A run already trained (the session's, the loop's), registered as the next version of `model` (alias
    challenger), as training would."""
    from mlops import registry

    client = MlflowClient(settings.mlflow_tracking_uri)
    source = client.search_model_versions(f"run_id = '{run_id}'")[0].source
    registry.register(client, source, model, run_id)
    return run_id


@pytest.fixture(scope="module")
def loop(
    settings: Settings,
    service_env: dict[str, str],
    trained_run_id: str,
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
    v1 = registered_again(settings, trained_run_id, MODEL_NAME)  # the session's training, as version 1 here
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
    later = traffic.answers_after(switched, at_least=20, timeout=30)  # the first v2 answer may be the newest
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


def _holders(path: Path) -> set[int]:
    """Processes other than this one with `path` open (a promotion waiting for, or holding, the lock)."""
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                found.add(int(fd_dir.parent.name))
        except OSError:  # the process ended, or is not ours to read
            continue
    return found - {os.getpid()}


def test_two_concurrent_make_promote_runs_move_champion_once(
    loop: dict[str, Any], settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    """Two `make promote` runs judge the same challenger against the same champion at once: one moves `champion`
    (compare and set under the promotion lock), the other finds it moved, records its decision as stale and
    re-judges against the new champion instead of moving it again. A model of its own (the loop's stays as is),
    whose two versions are the loop's two trained runs registered again (no training of its own)."""
    model = f"{MODEL_NAME}-race"
    env = {
        **service_env,
        "STATE_DIR": str(tmp_path),
        "MODEL_NAME": model,
        "PROMOTION_MIN_ROC_AUC": "0.6",
        "PROMOTION_MAX_BRIER": "0.25",
        "PROMOTION_MIN_UPLIFT": "-1",
        "PROMOTION_APPROVAL": "auto",
    }
    v1 = registered_again(settings, loop["v1"], model)
    assert promote(env).returncode == 0
    v2 = registered_again(settings, loop.get("v2") or train_version(settings, loop["state"]), model)
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.get_model_version_by_alias(model, "champion").run_id == v1
    lock = tmp_path / "promotion.lock"
    audit = AuditLog(tmp_path / "audit" / "promotions.jsonl")
    before = len(list(audit.records()))
    command = ["make", "--no-print-directory", "promote", "RUNTIME=native", "env=local"]
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # both judge now; neither may move before both have judged
        output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        runs = [subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **env}, **output) for _ in range(2)]
        try:
            wait_until(lambda: len(_holders(lock)) >= 2, 180, "both promotions judged and waiting for the lock")
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [o[-1500:] for o in outputs]
    waited = [o for o in outputs if "waiting for" in o and "promotion.lock" in o]
    assert waited, [o[-1500:] for o in outputs]  # a person sees why a promotion pauses
    records = list(audit.records())[before:]
    assert sorted(r["action"] for r in records) == ["promoted", "stale"], records
    stale = next(r for r in records if r["action"] == "stale")
    assert stale["champion"]["run_id"] == v1  # judged against the champion that was gone by then
    assert any("champion moved to version" in reason for reason in stale["reasons"]), stale
    assert client.get_model_version_by_alias(model, "champion").run_id == v2
    assert sum("promote: promoted:" in o for o in outputs) == 1, [o[-1500:] for o in outputs]
