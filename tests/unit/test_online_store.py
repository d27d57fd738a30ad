"""The online store (SQLite here; Redis in tests/integration/test_scoring_by_id.py), materialization's rows, the
by-id endpoints on the real Flask app and a real ModelService (tiny booster), and id-only Kinesis envelopes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.contract import clean
from mlops.data import generate_bank_churners
from mlops.materialize import feature_rows
from mlops.settings import PROJECT_ROOT, load_settings
from mlops.spec import FeatureSpec
from mlops.stores.online import OnlineStoreUnavailable, SQLiteOnlineStore
from server.api import close_app, create_app
from server.kinesis.envelope import EnvelopeError, parse_envelope
from tests.support.records import GOOD, RecordingSink, tiny_service

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")


def test_feature_rows_are_json_ready_and_keyed_by_id() -> None:
    frame = clean(generate_bank_churners(50, seed=4), SPEC)
    rows = feature_rows(frame, SPEC)
    assert len(rows) == 50
    customer, features = rows[0]
    assert customer == str(frame[SPEC.id_column].iloc[0])
    assert set(features) == set(SPEC.feature_columns)
    assert isinstance(features["customer_age"], int) and isinstance(features["credit_limit"], float)
    json.dumps(features, allow_nan=False)  # no NaN left: missing values are None
    assert any(f["education_level"] is None for _, f in rows)


def test_sqlite_store_upserts_idempotently_and_records_each_materialization(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(f"sqlite:///{tmp_path / 'online.sqlite'}")
    rows = [("1", {"a": 1}), ("2", {"a": 2})]
    assert store.write("ds", rows, "hash-1") == 2
    assert store.write("ds", rows, "hash-1") == 0  # same snapshot again: nothing changes
    first = store.get("ds", "1")
    assert first is not None and first.features == {"a": 1} and first.snapshot == "hash-1"
    assert store.write("ds", [("1", {"a": 10}), ("3", {"a": 3})], "hash-2") == 2
    changed = store.get("ds", "1")
    assert changed is not None and changed.features == {"a": 10} and changed.snapshot == "hash-2"
    assert store.get("ds", "404") is None and store.get("other", "1") is None
    assert [r.customer_id for r in store.scan("ds")] == ["1", "2", "3"]
    assert store.count("ds") == 3
    assert [(m["snapshot"], m["rows"], m["changed"]) for m in store.materializations("ds")] == [
        ("hash-1", 2, 2),
        ("hash-1", 2, 0),
        ("hash-2", 2, 2),
    ]


def test_an_unreachable_sqlite_store_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OnlineStoreUnavailable, match="ONLINE_STORE_URI"):
        SQLiteOnlineStore(f"sqlite:///{blocker / 'online.sqlite'}").get("ds", "1")


# ------------------------------------------------------------------------------------------- the by-id API
@pytest.fixture
def api(tmp_path: Path) -> Any:
    settings = load_settings("local", state_dir=tmp_path, drift_service_url=None)
    store = SQLiteOnlineStore(settings.online_store_location)
    store.write(SPEC.name, [("768805383", dict(GOOD)), ("stale", {**GOOD, "gender": "X"})], "snap-1")
    sink = RecordingSink()
    service = tiny_service()
    app = create_app(settings, service=service, sinks=[sink])
    yield app.test_client(), service, sink
    close_app(app)


def test_by_id_equals_the_full_record_and_names_its_snapshot(api: Any) -> None:
    client, service, sink = api
    by_id = client.get("/customers/768805383/churn")
    assert by_id.status_code == 200, by_id.get_json()
    full = client.post("/predict", json={**GOOD, "CLIENTNUM": "768805383"}).get_json()
    body = by_id.get_json()
    assert body["churn chance"] == pytest.approx(full["churn chance"], abs=1e-12)
    assert (body["clientnum"], body["snapshot"], body["model_run_id"]) == ("768805383", "snap-1", service.run_id)
    assert sink.entries[0]["customer_id"] == "768805383"  # logged like /predict, with the customer
    features = client.get("/customers/768805383/features").get_json()
    assert features["features"] == GOOD and features["snapshot"] == "snap-1"


def test_by_id_errors_are_answers(api: Any, tmp_path: Path) -> None:
    client, _, _ = api
    missing = client.get("/customers/42/churn")
    assert missing.status_code == 404
    assert missing.get_json()["field"] == "customer_id" and "'42'" in missing.get_json()["reason"]
    assert client.get("/customers/42/features").status_code == 404
    stale = client.get("/customers/stale/churn")
    assert stale.status_code == 409 and stale.get_json()["field"] == "gender"
    assert client.get(f"/customers/{'9' * 200}/churn").status_code == 400


def test_by_id_with_the_store_down_is_a_503_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = load_settings(
        "local", state_dir=tmp_path, drift_service_url=None, online_store_uri=f"sqlite:///{blocker / 'o.sqlite'}"
    )
    app = create_app(settings, service=tiny_service(), sinks=[])
    try:
        answer = app.test_client().get("/customers/1/churn")
        assert answer.status_code == 503 and "ONLINE_STORE_URI" in answer.get_json()["reason"]
    finally:
        close_app(app)


# --------------------------------------------------------------------------------------------- Kinesis
def test_id_only_envelopes() -> None:
    envelope = parse_envelope(b'{"request_id": "r1", "customer_id": 768805383}')
    assert (envelope.request_id, envelope.customer_id, envelope.record) == ("r1", "768805383", None)
    with pytest.raises(EnvelopeError) as both:
        parse_envelope(b'{"request_id": "r1", "customer_id": "1", "extra": 1}')
    assert both.value.field == "extra"
    with pytest.raises(EnvelopeError) as empty:
        parse_envelope(b'{"request_id": "r1", "customer_id": ""}')
    assert empty.value.field == "customer_id" and empty.value.request_id == "r1"
    with pytest.raises(EnvelopeError, match="or send 'customer_id'"):
        parse_envelope(b'{"request_id": "r1"}')


def test_the_consumer_scores_id_only_records_and_dead_letters_unknown_ids(tmp_path: Path) -> None:
    from server.kinesis.consumer import KinesisConsumer

    class FakeKinesis:
        def __init__(self) -> None:
            self.put: dict[str, list[dict[str, Any]]] = {}

        def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
            return {"StreamDescriptionSummary": {"StreamCreationTimestamp": 1.0}}

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            self.put.setdefault(StreamName, []).extend(json.loads(r["Data"]) for r in Records)
            return {"Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}

    settings = load_settings("local", state_dir=tmp_path)
    store = SQLiteOnlineStore(settings.online_store_location)
    store.write(SPEC.name, [("768805383", dict(GOOD))], "snap-1")
    service = tiny_service()
    client = FakeKinesis()
    consumer = KinesisConsumer(settings, service, [], client, poll_interval_s=0, online=store)
    records = [
        {"Data": b'{"request_id": "a", "customer_id": "768805383"}', "SequenceNumber": "1", "PartitionKey": "a"},
        {"Data": b'{"request_id": "b", "customer_id": "404"}', "SequenceNumber": "2", "PartitionKey": "b"},
    ]
    outcome = consumer.process_batch("shard-0", records)
    assert (outcome.scored, outcome.dead) == (1, 1)
    (result,) = client.put[settings.kinesis_results_stream]
    expected = float(service.predict_records(service.validate([GOOD]))[0])
    assert result["churn chance"] == pytest.approx(expected, abs=1e-12)
    assert (result["clientnum"], result["snapshot"]) == ("768805383", "snap-1")
    (letter,) = client.put[settings.kinesis_dead_letter_stream]
    assert letter["field"] == "customer_id" and "unknown customer '404'" in letter["reason"]
    assert np.isfinite(result["churn chance"])
