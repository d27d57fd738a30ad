"""Outcomes: the contract (records and file rows, same verdicts), the join rules, both stores (SQLite file and
mongomock) with idempotency and unknown ids, and the realized metrics against sklearn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlops.contract import DataError, RecordError
from mlops.outcomes import Outcome, outcome_from_record, outcomes_from_frame, read_outcomes_file
from mlops.performance import NotEnough, Performance, expected_calibration_error, realized
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec
from mlops.stores.outcomes import MongoOutcomeStore, SQLiteOutcomeStore
from mlops.stores.prediction_log import MongoStore, SQLiteStore, make_entry

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------- contract
def test_an_outcome_in_the_data_sets_own_spelling() -> None:
    outcome = outcome_from_record(
        {"request_id": "r-1", "CLIENTNUM": 768805383, "Attrition_Flag": "attrited customer", "date": "2026-11-02"},
        SPEC,
    )
    assert outcome == Outcome("r-1", "768805383", 1, datetime(2026, 11, 2, tzinfo=UTC))
    assert outcome_from_record({"clientnum": "7", "label": "Existing Customer"}, SPEC).label == 0


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"label": "Attrited Customer"}, "request_id", "missing; an outcome names its prediction by"),
        ({"request_id": "r"}, "label", "missing; expected 'Attrited Customer' or 'Existing Customer'"),
        ({"request_id": "r", "label": "Gone"}, "label", "unknown target label 'Gone'"),
        ({"request_id": "r", "label": 1}, "label", "must be the label as text"),
        ({"request_id": "r", "label": "Attrited Customer", "when": "x"}, "when", "unknown field"),
        ({"request_id": "r", "label": "Attrited Customer", "date": "yesterday"}, "date", "must be an ISO 8601"),
        ({"request_id": "r", "label": "Attrited Customer", "date": "2999-01-01"}, "date", "is in the future"),
        ({"request_id": "a b", "label": "Attrited Customer"}, "request_id", "must be 1-128 characters"),
        ({"request_id": ["r"], "label": "Attrited Customer"}, "request_id", "must be a string or an integer"),
        ({"clientnum": 1.5, "label": "Attrited Customer"}, "clientnum", "must be a whole number"),
        ({"label": "Attrited Customer", "Label": "x", "request_id": "r"}, "Label", "given twice"),
        ([1], "(record)", "must be a JSON object"),
    ],
)
def test_bad_outcomes_name_the_field_and_the_reason(record: Any, field: str, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        outcome_from_record(record, SPEC)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_file_row_gets_the_records_reason_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text("CLIENTNUM,Attrition_Flag,date\n1,Attrited Customer,2026-11-01\n2,Churned,2026-11-01\n")
    with pytest.raises(DataError) as caught:
        read_outcomes_file(str(path), SPEC)
    assert str(caught.value).startswith("column 'Attrition_Flag', row 3: unknown target label 'Churned'")
    with pytest.raises(RecordError) as same:
        outcome_from_record({"CLIENTNUM": "2", "Attrition_Flag": "Churned"}, SPEC)
    assert same.value.reason == caught.value.reason


def test_a_file_keeps_ids_as_text_and_names_a_missing_label_column(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text("clientnum,attrition_flag\n000123,Existing Customer\n")
    assert read_outcomes_file(str(path), SPEC)[0].customer_id == "000123"
    with pytest.raises(DataError, match="missing column: the label"):
        outcomes_from_frame(pd.DataFrame({"clientnum": ["1"]}), SPEC)
    with pytest.raises(DataError, match="no such file"):
        read_outcomes_file(str(tmp_path / "absent.csv"), SPEC)


# ---------------------------------------------------------------------------------------------------- stores
@pytest.fixture(params=["sqlite", "mongomock"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """(prediction store, outcome store) over the same data."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
        yield SQLiteStore(uri), SQLiteOutcomeStore(uri)
        return
    client = mongomock.MongoClient()
    uri = "mongodb://localhost:27017/outcomes_test"
    yield (
        MongoStore(uri, client_factory=lambda *a, **k: client),
        MongoOutcomeStore(uri, client_factory=lambda *a, **k: client),
    )


def _predictions(store: Any) -> None:
    entries = [
        # one HTTP batch of two customers under one request id
        make_entry({"x": 1}, 0.9, "run-a", "http", "batch-1", T0, customer_id="c1"),
        make_entry({"x": 2}, 0.2, "run-a", "http", "batch-1", T0, customer_id="c2"),
        # customer c3 scored twice: the outcome settles the newest before it was observed
        make_entry({"x": 3}, 0.3, "run-a", "kinesis", "k-1", T0 + timedelta(days=1), customer_id="c3"),
        make_entry({"x": 3}, 0.7, "run-b", "kinesis", "k-2", T0 + timedelta(days=3), customer_id="c3"),
        make_entry({"x": 4}, 0.6, "run-b", "http", "solo", T0, customer_id=None),
    ]
    store.write_many(entries)


def test_join_rules_idempotency_and_unknown(stores: tuple[Any, Any]) -> None:
    predictions, outcomes = stores
    _predictions(predictions)
    when = T0 + timedelta(days=2)
    report = outcomes.ingest(
        [
            Outcome("batch-1", "c1", 1, when),  # request id + customer: the batch's record of c1
            Outcome("batch-1", None, 0, when),  # two records under that id, no customer: ambiguous
            Outcome(None, "c3", 1, when),  # newest prediction of c3 before day 2: k-1 (run-a)
            Outcome("solo", None, 0, when),
            Outcome("nope", None, 1, when),  # unknown request id
            Outcome(None, "c9", 1, when),  # unknown customer
        ]
    )
    assert (report.settled, report.ambiguous, report.unknown, report.duplicates) == (3, 1, 2, 0)
    assert report.unknown_keys == ["request_id=nope", "customer=c9"]
    # the same outcomes again: counted once, the unknown stay unknown
    again = outcomes.ingest([Outcome("batch-1", "c1", 1, when), Outcome(None, "c3", 1, when)])
    assert (again.settled, again.duplicates) == (0, 2)
    # another outcome for a settled prediction: same label -> duplicate, the other label -> conflict
    other = outcomes.ingest([Outcome("k-1", None, 1, when), Outcome("solo", None, 1, when)])
    assert (other.duplicates, other.conflicts) == (1, 1)
    rows = outcomes.settled()
    assert [(r["model_run_id"], r["prediction"], r["label"]) for r in rows] == [
        ("run-a", 0.9, 1),
        ("run-a", 0.3, 1),
        ("run-b", 0.6, 0),
    ]
    assert outcomes.run_ids() == ["run-a", "run-b"]
    assert [r["prediction"] for r in outcomes.settled("run-a", limit=1)] == [0.3]
    window = outcomes.settled_between(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert sorted(r["prediction"] for r in window) == [0.6, 0.9]
    newest = outcomes.settled_between(T0 - timedelta(hours=1), T0 + timedelta(hours=1), limit=1)
    assert newest == window[-1:]  # a report reads the window's newest REPORT_MAX_ROWS, oldest first


def test_an_unknown_outcome_settles_once_its_prediction_is_logged(stores: tuple[Any, Any]) -> None:
    predictions, outcomes = stores
    early = Outcome("late-1", None, 1, T0 + timedelta(days=1))
    assert outcomes.ingest([early]).unknown == 1
    predictions.write_many([make_entry({"x": 1}, 0.4, "run-a", "http", "late-1", T0)])
    assert outcomes.ingest([early]).settled == 1
    assert outcomes.ingest([early]).duplicates == 1


def test_an_old_prediction_log_gains_the_customer_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:  # the table as it was before outcomes
        connection.execute(
            "CREATE TABLE predictions (prediction_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, timestamp TEXT "
            "NOT NULL, source TEXT NOT NULL, model_run_id TEXT NOT NULL, input TEXT NOT NULL, prediction REAL NOT NULL)"
        )
        connection.execute("INSERT INTO predictions VALUES ('p0', 'r0', '2026-01-01', 'http', 'run', '{}', 0.5)")
    store = SQLiteStore(f"sqlite:///{path}")
    store.write_many([make_entry({"x": 1}, 0.4, "run-a", "http", "r1", T0, customer_id="c1")])
    assert store.count() == 2
    report = SQLiteOutcomeStore(f"sqlite:///{path}").ingest([Outcome(None, "c1", 1, T0 + timedelta(days=1))])
    assert report.settled == 1


# --------------------------------------------------------------------------------------------------- metrics
def test_realized_metrics_equal_sklearn_and_refuse_small_windows() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    found = realized(y, p, min_labels=100)
    assert isinstance(found, Performance)
    assert found.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert found.labels == 500 and found.positives == int(y.sum())
    assert found.observed_rate == pytest.approx(y.mean()) and found.mean_predicted == pytest.approx(p.mean())
    assert found.calibration_error < 0.1  # drawn from p itself: well calibrated
    too_few = realized(y[:10], p[:10], min_labels=100)
    assert isinstance(too_few, NotEnough) and too_few.message.startswith("not enough outcomes: 10 of 100")
    one_class = realized([1] * 200, [0.5] * 200, min_labels=100)
    assert isinstance(one_class, NotEnough) and "same label" in one_class.reason


def test_calibration_error_of_a_constant_forecast() -> None:
    labels = np.array([1, 0, 0, 0])
    assert expected_calibration_error(labels, np.full(4, 0.25)) == pytest.approx(0.0)
    assert expected_calibration_error(labels, np.full(4, 0.75)) == pytest.approx(0.5)


def test_a_shadow_twin_is_settled_with_its_live_prediction_and_never_chosen(stores: tuple[Any, Any]) -> None:
    predictions, outcomes = stores
    predictions.write_many(
        [
            make_entry({"x": 1}, 0.8, "live-run", "http", "req-s", T0, customer_id="c1"),
            make_entry({"x": 1}, 0.6, "shadow-run", "shadow", "req-s", T0, customer_id="c1"),
            make_entry({"x": 2}, 0.3, "shadow-run", "shadow", "only-shadow", T0, customer_id="c2"),
        ]
    )
    when = T0 + timedelta(days=1)
    report = outcomes.ingest([Outcome("req-s", None, 1, when), Outcome("only-shadow", None, 1, when)])
    # the live prediction is the one the outcome names; a shadow alone settles nothing (it answered no one)
    assert (report.settled, report.unknown) == (1, 1)
    assert sorted((r["model_run_id"], r["prediction"]) for r in outcomes.settled()) == [
        ("live-run", 0.8),
        ("shadow-run", 0.6),
    ]
    assert outcomes.run_ids() == ["live-run", "shadow-run"]
