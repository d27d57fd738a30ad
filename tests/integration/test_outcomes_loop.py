"""Outcomes on real servers: predictions through gunicorn's API and the Kinesis consumer, outcomes back through
POST /outcomes and `python -m mlops.ingest_outcomes` (what `make outcomes` runs), realized metrics from the drift
service's /metrics.

2,000 predictions over HTTP (1,000 single calls, 50 batches of 20 that share a request id) and 500 over Kinesis;
outcomes for 1,500 of them: by request id, by customer id, by both (a batch's record), through a file and through
the endpoint; 100 sent twice, 20 naming nothing we predicted. The gauge's ROC AUC must equal sklearn's on exactly
the (answered probability, label) pairs the test itself joined, to 1e-9.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from sklearn.metrics import brier_score_loss, roc_auc_score

from mlops import aws
from mlops.data import clean, generate_bank_churners
from mlops.settings import Settings
from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http
from simulation_business.sampling import to_records
from tests.support.kinesis import make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

DATASET = "bank_churners"
LABELS = {1: "Attrited Customer", 0: "Existing Customer"}


@dataclass
class Loop:
    state_dir: Path
    env: dict[str, str]
    api_url: str
    drift_url: str
    log_uri: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def loop(
    settings: Settings, service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    state = tmp_path_factory.mktemp("outcomes-loop")
    streams = make_streams(aws.client("kinesis", settings))
    api_port, drift_port, kinesis_port = free_port(), free_port(), free_port()
    uri = f"sqlite:///{state / 'predictions.sqlite'}"
    env = {
        **service_env,
        **streams.env(),
        "STATE_DIR": str(state),
        "PREDICTION_LOG_URI": uri,
        "API_PORT": str(api_port),
        "API_WORKERS": "2",
        "DRIFT_PORT": str(drift_port),
        "DRIFT_SERVICE_URL": f"http://127.0.0.1:{drift_port}",
        "KINESIS_METRICS_PORT": str(kinesis_port),
        "OUTCOME_MIN_LABELS": "100",
        "OUTCOME_WINDOW_SIZE": "5000",
        "PERFORMANCE_INTERVAL_SECONDS": "1",
    }
    found = Loop(state, env, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{drift_port}", uri)
    python = str(VENV_BIN / "python")
    try:
        for name, module, health in (
            ("drift-service", "monitoring.evidently_service", f"{found.drift_url}/health"),
            ("predict-api", "server.api", f"{found.api_url}/health"),
            ("serve-kinesis", "server.kinesis", f"http://127.0.0.1:{kinesis_port}/metrics"),
        ):
            log = state / "logs" / f"{name}.log"
            found.logs.append(log)
            process = start_process([python, "-m", module], log, env=env)
            found.processes.append(process)
            wait_for_http(health, 180, process, log)
        found.env["_PREDICTIONS_STREAM"] = streams.predictions
        found.env["_RESULTS_STREAM"] = streams.results
        yield found
    finally:
        for process in reversed(found.processes):
            stop_process(process, timeout=20)


@dataclass
class Predicted:
    """What the clients got back: one entry per scored record."""

    request_id: str
    customer_id: str
    probability: float
    label: int  # the customer's true label
    via: str  # http-single, http-batch, kinesis


@pytest.fixture(scope="module")
def predicted(loop: Loop, settings: Settings, trained_run_id: str) -> list[Predicted]:
    spec_frame = clean(generate_bank_churners(2600, seed=321), _spec(settings))
    spec = _spec(settings)
    records = to_records(spec_frame, spec, with_id=True)[:2500]
    labels = dict(zip(spec_frame[spec.id_column].astype(str), spec_frame["label"].astype(int), strict=True))
    assert len({r[spec.id_column] for r in records}) == 2500, "the test needs 2,500 distinct customers"
    out: list[Predicted] = []
    with requests.Session() as session:
        for record in records[:1000]:
            request_id = f"single-{uuid.uuid4().hex}"
            answer = session.post(
                f"{loop.api_url}/predict", json=record, headers={"X-Request-ID": request_id}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model_run_id"] == trained_run_id
            out.append(
                Predicted(request_id, body["clientnum"], body["churn chance"], labels[body["clientnum"]], "http-single")
            )
        for start in range(1000, 2000, 20):
            request_id = f"batch-{uuid.uuid4().hex}"
            answer = session.post(
                f"{loop.api_url}/predict",
                json=records[start : start + 20],
                headers={"X-Request-ID": request_id},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            for body in answer.json():
                out.append(
                    Predicted(
                        request_id, body["clientnum"], body["churn chance"], labels[body["clientnum"]], "http-batch"
                    )
                )
    client = aws.client("kinesis", settings)
    envelopes = [{"request_id": f"kin-{uuid.uuid4().hex}", "record": r} for r in records[2000:2500]]
    put_envelopes(client, loop.env["_PREDICTIONS_STREAM"], envelopes)
    results: dict[str, dict[str, Any]] = {}

    def all_results() -> bool:
        results.update({r["request_id"]: r for r in read_stream(client, loop.env["_RESULTS_STREAM"])})
        return len(results) >= 500

    wait_until(all_results, 120, "500 Kinesis results")
    for sent in envelopes:
        body = results[sent["request_id"]]
        assert body["model_run_id"] == trained_run_id
        out.append(
            Predicted(sent["request_id"], body["clientnum"], body["churn chance"], labels[body["clientnum"]], "kinesis")
        )
    store = SQLiteStore(loop.log_uri)
    wait_until(lambda: store.count() >= 2500, 60, "2,500 predictions in the log")
    return out


def _got(request_id: str, body: dict[str, Any], labels: dict[str, int], via: str) -> Predicted:
    """One answer (HTTP or Kinesis result): its echoed customer id, its probability, that customer's true label."""
    return Predicted(request_id, body["clientnum"], body["churn chance"], labels[body["clientnum"]], via)


def _spec(settings: Settings) -> Any:
    from mlops.spec import FeatureSpec

    return FeatureSpec.load(settings.feature_spec)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ingest_file(loop: Loop, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "mlops.ingest_outcomes", str(path)],
        env={**os.environ, **loop.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _post(loop: Loop, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for start in range(0, len(outcomes), 400):
        answer = requests.post(f"{loop.api_url}/outcomes", json=outcomes[start : start + 400], timeout=30)
        assert answer.status_code == 200, answer.text
        for key, value in answer.json().items():
            if isinstance(value, int | list):  # counts and key lists add up
                total[key] = total.get(key, 0 if isinstance(value, int) else []) + value
            else:  # archived_before: the archive's horizon, the same in every answer (none archived here)
                total[key] = value
    return total


def _gauge(text: str, name: str, run_id: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and f'model_run_id="{run_id}"' in line and f'dataset="{DATASET}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_outcomes_settle_once_and_the_gauges_equal_sklearn(
    loop: Loop, predicted: list[Predicted], trained_run_id: str
) -> None:
    singles = [p for p in predicted if p.via == "http-single"]
    batched = [p for p in predicted if p.via == "http-batch"]
    streamed = [p for p in predicted if p.via == "kinesis"]
    by_request = singles[:600]  # endpoint, request id only
    by_customer_file = batched[:300]  # file, customer id only
    by_both = batched[300:500]  # endpoint, request id + customer (records of a shared-id batch)
    kinesis_file = streamed[:300]  # file, request id only
    kinesis_customer = streamed[300:400]  # endpoint, customer id only
    settled = by_request + by_customer_file + by_both + kinesis_file + kinesis_customer
    assert len(settled) == 1500

    def text(p: Predicted) -> str:
        return LABELS[p.label]

    # ---- files: what `make outcomes FILE=...` loads (Kaggle spelling, a date column)
    customer_file = _write_csv(
        loop.state_dir / "customers.csv",
        ["CLIENTNUM", "Attrition_Flag", "date"],
        [[p.customer_id, text(p), "2099-01-01"] for p in by_customer_file[:1]]
        + [[p.customer_id, text(p), ""] for p in by_customer_file],
    )
    # the future date on the first row stops the file before anything is stored
    refused = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "mlops.ingest_outcomes", str(customer_file)],
        env={**os.environ, **loop.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "column 'date', row 2: is in the future" in refused.stderr
    customer_file = _write_csv(
        loop.state_dir / "customers.csv",
        ["CLIENTNUM", "Attrition_Flag"],
        [[p.customer_id, text(p)] for p in by_customer_file]
        + [[f"999{i:06d}", "Existing Customer"] for i in range(10)],
    )
    from_file = _ingest_file(loop, customer_file)
    assert (from_file["settled"], from_file["unknown"]) == (300, 10)
    kinesis_file_path = _write_csv(
        loop.state_dir / "kinesis.csv", ["request_id", "label"], [[p.request_id, text(p)] for p in kinesis_file]
    )
    assert _ingest_file(loop, kinesis_file_path)["settled"] == 300

    # ---- the endpoint
    endpoint = (
        [{"request_id": p.request_id, "label": text(p)} for p in by_request]
        + [{"request_id": p.request_id, "clientnum": p.customer_id, "label": text(p)} for p in by_both]
        + [{"CLIENTNUM": p.customer_id, "Attrition_Flag": text(p)} for p in kinesis_customer]
        + [{"request_id": f"never-{i}", "label": "Attrited Customer"} for i in range(10)]
    )
    answer = _post(loop, endpoint)
    assert (answer["settled"], answer["unknown"], answer["duplicates"]) == (900, 10, 0)
    assert (answer["archived"], answer["archived_before"]) == (0, None)  # nothing archived: no horizon yet
    assert sorted(answer["unknown_keys"]) == sorted(f"request_id=never-{i}" for i in range(10))

    # ---- 100 sent twice (50 through each way): counted once
    again = _post(loop, endpoint[:50])
    assert (again["settled"], again["duplicates"]) == (0, 50)
    assert (
        _ingest_file(
            loop,
            _write_csv(
                loop.state_dir / "again.csv",
                ["clientnum", "attrition_flag"],
                [[p.customer_id, text(p)] for p in by_customer_file[:50]],
            ),
        )["duplicates"]
        == 50
    )

    # ---- the gauges: exactly the rows the test joined
    labels = np.array([p.label for p in settled])
    chances = np.array([p.probability for p in settled])
    expected_auc = roc_auc_score(labels, chances)

    def gauges() -> str | None:
        metrics = requests.get(f"{loop.drift_url}/metrics", timeout=5).text
        return metrics if _gauge(metrics, "realized_labels", trained_run_id) == 1500 else None

    try:
        metrics = wait_until_value(gauges, 60, "realized_labels == 1500")
    except AssertionError:
        raise AssertionError(loop.tails()) from None
    assert _gauge(metrics, "realized_roc_auc", trained_run_id) == pytest.approx(expected_auc, abs=1e-9)
    assert _gauge(metrics, "realized_brier_score", trained_run_id) == pytest.approx(
        brier_score_loss(labels, chances), abs=1e-9
    )
    assert _gauge(metrics, "realized_observed_churn_rate", trained_run_id) == pytest.approx(labels.mean(), abs=1e-12)
    assert _gauge(metrics, "realized_enough_labels", trained_run_id) == 1
    status = requests.get(f"{loop.drift_url}/performance", timeout=5).json()
    assert status["runs"][trained_run_id]["status"] == "ok"
    assert status["runs"][trained_run_id]["roc_auc"] == pytest.approx(expected_auc, abs=1e-9)
    api_metrics = requests.get(f"{loop.api_url}/metrics", timeout=5).text
    assert 'predict_api_outcomes_total{status="settled"} 900.0' in api_metrics


def test_bad_outcomes_get_a_4xx_naming_the_field(loop: Loop, predicted: list[Predicted]) -> None:
    cases = [
        ({"request_id": "x"}, "label"),
        ({"request_id": "x", "label": "Churned"}, "label"),
        ([{"request_id": "x", "label": "Attrited Customer"}, {"label": "Attrited Customer"}], "request_id"),
        ({"request_id": "x", "label": "Attrited Customer", "colour": "red"}, "colour"),
    ]
    for body, field_name in cases:
        answer = requests.post(f"{loop.api_url}/outcomes", json=body, timeout=10)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field_name
    assert requests.post(f"{loop.api_url}/outcomes", data=b"{", timeout=10).status_code == 400
    assert requests.post(f"{loop.api_url}/outcomes", json=[1], timeout=10).json()["index"] == 0


def wait_until_value(condition: Any, timeout: float, what: str) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
