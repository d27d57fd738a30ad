"""Drift maths, the sliding window, batch validation and the service's not-enough-data state (no servers)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.data import clean, generate_bank_churners
from mlops.settings import load_settings
from mlops.spec import FeatureSpec
from monitoring.evidently_service.app import create_app
from monitoring.evidently_service.drift import (
    BatchError,
    SlidingWindow,
    compute_drift,
    is_drifted,
    mean_prediction,
    prepare_reference,
    validate_batch,
)
from monitoring.evidently_service.metrics import DriftMetrics
from monitoring.evidently_service.monitor import NOT_ENOUGH_DATA, DriftMonitor

SHIFTED = ["credit_limit", "total_trans_amt", "total_revolving_bal", "customer_age", "total_trans_ct"]


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return FeatureSpec.load("features.yaml")


@pytest.fixture(scope="module")
def data(spec: FeatureSpec) -> pd.DataFrame:
    return clean(generate_bank_churners(3000, seed=11), spec)


def records(frame: pd.DataFrame, spec: FeatureSpec, prediction: float = 0.25, run_id: str | None = None) -> list[dict]:
    features = frame[spec.feature_columns].astype(object).where(frame[spec.feature_columns].notna(), None)
    out = features.to_dict("records")
    for i, record in enumerate(out):
        record.update(prediction=prediction, model_run_id=run_id, request_id=str(i), timestamp="2026-01-01T00:00:00Z")
    return out


def shift(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in SHIFTED:
        out[column] = (out[column] * 1.8 + out[column].std()).round()  # whole: valid for int features too
    out["customer_age"] = out["customer_age"].clip(upper=120)  # within the spec's bounds: a record the model takes
    return out


def test_same_distribution_has_little_drift_and_shift_is_detected(spec: FeatureSpec, data: pd.DataFrame) -> None:
    reference = prepare_reference(data.iloc[:2000], spec)
    same = compute_drift(data.iloc[2000:], reference, spec)
    assert same.rows == 1000 and same.reference_rows == 2000
    assert [c.column for c in same.columns] == spec.feature_columns
    assert same.share < 0.2, same.as_dict()

    drifted = compute_drift(shift(data.iloc[2000:]), reference, spec)
    flagged = {c.column for c in drifted.columns if c.drifted}
    assert set(SHIFTED) <= flagged
    assert drifted.drifted_count == len(flagged)
    assert drifted.share == pytest.approx(len(flagged) / len(spec.feature_columns))
    assert drifted.share > same.share


def test_is_drifted_follows_the_method_kind() -> None:
    assert is_drifted("Wasserstein distance (normed)", 0.2, 0.1)
    assert not is_drifted("Jensen-Shannon distance", 0.05, 0.1)
    assert is_drifted("K-S p_value", 0.01, 0.05)
    assert not is_drifted("K-S p_value", 0.5, 0.05)
    assert not is_drifted("Wasserstein distance (normed)", float("nan"), 0.1)


def test_window_keeps_the_newest_rows() -> None:
    window = SlidingWindow(5)
    window.extend([{"i": i, "model_run_id": "a"} for i in range(4)])
    window.extend([{"i": i, "model_run_id": "b" if i == 5 else None} for i in range(4, 8)])
    assert len(window) == 5
    assert [r["i"] for r in window.snapshot()] == [3, 4, 5, 6, 7]
    assert window.received == 8
    assert window.latest_run_id() == "b"


def test_mean_prediction_ignores_missing() -> None:
    assert mean_prediction([{"prediction": 0.2}, {"prediction": 0.4}, {"prediction": None}, {}]) == pytest.approx(0.3)
    assert mean_prediction([{}]) is None


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"a": 1}, None, "JSON list"),
        ([], None, "empty"),
        ([1], "(record)", "JSON object"),
        ([{"prediction": 0.3}], "(record)", "none of the spec's features"),
    ],
)
def test_validate_batch_rejects_with_reason(spec: FeatureSpec, payload: Any, field: str | None, fragment: str) -> None:
    with pytest.raises(BatchError) as caught:
        validate_batch(payload, spec, 100)
    assert caught.value.field == field
    assert fragment in caught.value.reason


def test_validate_batch_checks_types_and_size(spec: FeatureSpec, data: pd.DataFrame) -> None:
    good = records(data.iloc[:3], spec)
    checked = validate_batch(good, spec, 10)
    assert [{k: r[k] for k in spec.feature_columns} for r in checked] == [
        {k: r[k] for k in spec.feature_columns} for r in good
    ]
    bad = [dict(good[0]), dict(good[1], credit_limit="lots")]
    with pytest.raises(BatchError) as caught:
        validate_batch(bad, spec, 10)
    assert (caught.value.field, caught.value.index) == ("credit_limit", 1)
    with pytest.raises(BatchError, match="at most 2"):
        validate_batch(good, spec, 2)
    with pytest.raises(BatchError) as caught:
        validate_batch([dict(good[0], gender=1)], spec, 10)
    assert caught.value.field == "gender"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return None


class FakeLoader:
    """Serves a fixed frame as every reference and counts loads (the reload-on-new-model rule)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.loads: list[str | None] = []

    def load(self, dataset: str, run_id: str | None) -> tuple[pd.DataFrame, str]:
        self.loads.append(run_id)
        return self.frame, f"s3://test/{dataset}/{run_id}/reference.parquet"


def test_service_reports_not_enough_data_then_drift(spec: FeatureSpec, data: pd.DataFrame) -> None:
    settings = load_settings("local", drift_min_rows=300, drift_window_size=500)
    loader = FakeLoader(data.iloc[:2000])
    monitor = DriftMonitor(settings, spec, loader, DriftMetrics())  # type: ignore[arg-type]
    client = create_app(settings, monitor=monitor, start_worker=False).test_client()

    answer = client.post("/iterate/bank_churners", json=records(data.iloc[2000:2100], spec, run_id="run-a"))
    assert answer.status_code == 202 and answer.get_json()["window_rows"] == 100
    assert monitor.compute("bank_churners") == NOT_ENOUGH_DATA
    state = client.get("/status").get_json()["datasets"]["bank_churners"]
    assert state["status"] == NOT_ENOUGH_DATA and "100 of 300" in state["message"]
    assert loader.loads == []  # no reference needed yet
    assert sample(client.get("/metrics").get_data(as_text=True), "drift_enough_data", dataset="bank_churners") == 0

    shifted = shift(data.iloc[2100:2700])
    for start in range(0, 600, 200):
        assert (
            client.post(
                "/iterate/bank_churners", json=records(shifted.iloc[start : start + 200], spec, 0.6, "run-a")
            ).status_code
            == 202
        )
    assert monitor.compute("bank_churners") == "ok"
    status = client.get("/status").get_json()["datasets"]["bank_churners"]
    assert status["window_rows"] == 500 and status["received"] == 700
    assert status["drift"]["drift_share"] > 0.2
    metrics = client.get("/metrics").get_data(as_text=True)
    assert sample(metrics, "drift_window_rows", dataset="bank_churners") == 500
    assert sample(metrics, "drift_prediction_mean", dataset="bank_churners") == pytest.approx(0.6)
    assert sample(metrics, "drift_column_drifted", dataset="bank_churners", column="credit_limit") == 1
    assert sample(metrics, "drift_enough_data", dataset="bank_churners") == 1
    assert sample(metrics, "drift_share", dataset="bank_churners") == pytest.approx(status["drift"]["drift_share"])
    assert sample(metrics, "drift_last_computation_timestamp_seconds", dataset="bank_churners") > 1.7e9

    # same model: the reference is not reloaded; a new run id reloads it
    monitor.compute("bank_churners")
    assert loader.loads == ["run-a"]
    client.post("/iterate/bank_churners", json=records(data.iloc[:10], spec, run_id="run-b"))
    monitor.compute("bank_churners")
    assert loader.loads == ["run-a", "run-b"]


def test_service_refuses_bad_batches_with_4xx(spec: FeatureSpec, data: pd.DataFrame) -> None:
    settings = load_settings("local")
    monitor = DriftMonitor(settings, spec, FakeLoader(data), DriftMetrics())  # type: ignore[arg-type]
    client = create_app(settings, monitor=monitor, start_worker=False).test_client()
    unknown = client.post("/iterate/other", json=records(data.iloc[:1], spec))
    assert unknown.status_code == 404 and "bank_churners" in unknown.get_json()["error"]
    not_json = client.post("/iterate/bank_churners", data="hello", content_type="text/plain")
    assert not_json.status_code == 400 and "JSON" in not_json.get_json()["error"]
    wrong = client.post("/iterate/bank_churners", json=[{"prediction": 0.5}])  # no feature at all
    assert wrong.status_code == 422 and wrong.get_json()["field"] == "(record)"
    assert client.get("/health").status_code == 200
    assert len(monitor.datasets["bank_churners"].window) == 0


def test_a_failing_reference_is_an_error_state_not_a_crash(spec: FeatureSpec, data: pd.DataFrame) -> None:
    class DeadLoader:
        def load(self, dataset: str, run_id: str | None) -> tuple[pd.DataFrame, str]:
            raise ConnectionError("S3 is unreachable (AWS_ENDPOINT_URL=http://127.0.0.1:1)")

    settings = load_settings("local", drift_min_rows=10)
    monitor = DriftMonitor(settings, spec, DeadLoader(), DriftMetrics())  # type: ignore[arg-type]
    monitor.ingest("bank_churners", records(data.iloc[:20], spec))
    assert monitor.compute("bank_churners") == "error"
    assert "AWS_ENDPOINT_URL" in monitor.status()["datasets"]["bank_churners"]["message"]
