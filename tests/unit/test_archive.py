"""The archive of the prediction log (mlops.archive) on both stores, with S3 mocked in process (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pytest

from mlops import aws
from mlops.archive import ArchiveError, archive_prediction_log, read_archive
from mlops.archive.sources import MongoSource, SQLiteSource
from mlops.outcomes import Outcome
from mlops.settings import Settings
from mlops.stores.outcomes import MongoOutcomeStore, SQLiteOutcomeStore
from mlops.stores.prediction_log import MongoStore, SQLiteStore, make_entry
from tests.support.mock_s3 import mocked_s3_settings

NOW = datetime.now(UTC)
DAYS_KEPT = 30


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with mocked_s3_settings(tmp_path, "archive-test", prediction_retention_days=DAYS_KEPT, archive_chunk_rows=100) as s:
        yield s


@pytest.fixture(params=["sqlite", "mongomock"])
def log(request: pytest.FixtureRequest, settings: Settings) -> Iterator[dict[str, Any]]:
    """The prediction store, the outcome store and the archive's source over one log."""
    if request.param == "sqlite":
        uri = f"sqlite:///{settings.state_dir / 'log.sqlite'}"
        source = lambda: SQLiteSource(uri)  # noqa: E731
        yield {"predictions": SQLiteStore(uri), "outcomes": SQLiteOutcomeStore(uri), "source": source}
        return
    client = mongomock.MongoClient()
    uri = "mongodb://localhost:27017/archive_test"
    factory = lambda *a, **k: client  # noqa: E731
    ttl: list[int] = []

    class Source(MongoSource):
        def ensure_ttl(self, seconds: int) -> None:  # mongomock has no collMod: what a real MongoDB is asked
            ttl.append(seconds)

    yield {
        "predictions": MongoStore(uri, client_factory=factory),
        "outcomes": MongoOutcomeStore(uri, client_factory=factory),
        "source": lambda: Source(uri, client_factory=factory),
        "ttl": ttl,
    }


def _fill(log: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """250 old predictions over three days and two runs, 40 recent ones; customer c-<i>."""

    def when(i: int) -> datetime:
        return NOW - timedelta(days=DAYS_KEPT + 3 - i % 3, minutes=i)

    old = [
        make_entry({"x": i, "k": "gold"}, i / 1000, f"run-{i % 2}", "http", f"old-{i}", when(i), customer_id=f"c-{i}")
        for i in range(250)
    ]
    recent = [
        make_entry({"x": i}, 0.5, "run-1", "kinesis", f"new-{i}", NOW - timedelta(days=1), customer_id=f"n-{i}")
        for i in range(40)
    ]
    log["predictions"].write_many(old + recent)
    return old, recent


def test_rows_past_the_horizon_are_archived_by_date_and_run_then_deleted(
    log: dict[str, Any], settings: Settings
) -> None:
    old, recent = _fill(log)
    # settle 30 old predictions (their settlements are old too) and 5 recent ones
    report = log["outcomes"].ingest(
        [Outcome(e["request_id"], None, 1, datetime.fromisoformat(e["timestamp"])) for e in old[:30] + recent[:5]]
    )
    assert report.settled == 35
    dry = archive_prediction_log(settings, NOW, dry_run=True, say=lambda _: None, source=log["source"]())
    assert dry.archived == {"settlements": 30, "outcomes": 0, "predictions": 250}
    lines: list[str] = []
    summary = archive_prediction_log(settings, NOW, say=lines.append, source=log["source"]())
    assert summary.archived == summary.deleted == {"settlements": 30, "outcomes": 0, "predictions": 250}
    assert any("predictions: 200 rows so far" in line for line in lines), lines  # chunks of ARCHIVE_CHUNK_ROWS
    # what is left: the recent rows only
    kept = log["predictions"].read(NOW - timedelta(days=365), None, None)
    assert sorted(e["request_id"] for e in kept) == sorted(e["request_id"] for e in recent)
    # the archive: every old prediction once, its input and partitions as written
    frame = read_archive(settings, "predictions")
    assert sorted(frame["prediction_id"]) == sorted(e["prediction_id"] for e in old)
    by_id = {e["prediction_id"]: e for e in old}
    for row in frame.itertuples():
        entry = by_id[row.prediction_id]
        assert json.loads(row.input) == entry["input"] and row.model_run_id == entry["model_run_id"]
        assert row.date == entry["timestamp"][:10] and row.customer_id == entry["customer_id"]
    keys = [o["Key"] for o in aws.client("s3", settings).list_objects_v2(Bucket="archive-test")["Contents"]]
    assert any("/predictions/date=" in k and "/model_run_id=run-0/part-" in k for k in keys), keys
    assert len(read_archive(settings, "settlements")) == 30
    if "ttl" in log:  # MongoDB: the TTL safety net, PREDICTION_RETENTION_DAYS + MONGO_TTL_MARGIN_DAYS
        assert log["ttl"] == [(DAYS_KEPT + settings.mongo_ttl_margin_days) * 86400]
    # a second run finds nothing more to do
    again = archive_prediction_log(settings, NOW, say=lambda _: None, source=log["source"]())
    assert sum(again.archived.values()) == 0


def test_outcomes_for_archived_predictions_are_reported_archived_with_the_horizon(
    log: dict[str, Any], settings: Settings
) -> None:
    old, _ = _fill(log)
    summary = archive_prediction_log(settings, NOW, say=lambda _: None, source=log["source"]())
    late = datetime.fromisoformat(old[0]["timestamp"]) + timedelta(hours=1)  # observed before the horizon
    report = log["outcomes"].ingest([Outcome(None, old[0]["customer_id"], 1, late)])
    assert (report.archived, report.unknown, report.archived_before) == (1, 0, summary.horizon)
    # observed after the horizon, about a customer whose only prediction was archived: unknown, with the horizon
    later = log["outcomes"].ingest([Outcome(None, old[1]["customer_id"], 1, NOW)])
    assert (later.unknown, later.archived_before) == (1, summary.horizon)


def test_a_run_killed_between_writing_and_deleting_is_resumed_without_duplicates(
    log: dict[str, Any], settings: Settings
) -> None:
    old, _ = _fill(log)
    source = log["source"]()
    real_delete = source.delete
    calls = {"n": 0}

    def killed(table: Any, keys: Any) -> int:
        calls["n"] += table.name == "predictions"
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies after writing this chunk, before deleting it
        return real_delete(table, keys)

    source.delete = killed
    with pytest.raises(KeyboardInterrupt):
        archive_prediction_log(settings, NOW, say=lambda _: None, source=source)
    summary = archive_prediction_log(settings, NOW, say=lambda _: None, source=log["source"]())
    assert summary.deleted["predictions"] == summary.archived["predictions"] == 150  # what the killed run left
    frame = read_archive(settings, "predictions")
    assert len(frame) == frame["prediction_id"].nunique() == len(old)


def test_a_delete_that_does_not_match_the_archive_stops_the_run(log: dict[str, Any], settings: Settings) -> None:
    _fill(log)
    source = log["source"]()
    source.delete = lambda table, keys: len(keys) - 1
    with pytest.raises(ArchiveError, match="archived 100 rows but deleted 99"):
        archive_prediction_log(settings, NOW, say=lambda _: None, source=source)


def test_the_mongodb_ttl_index_is_made_on_the_timestamp() -> None:
    client = mongomock.MongoClient()
    source = MongoSource("mongodb://localhost:27017/ttl_test", client_factory=lambda *a, **k: client)
    source.ensure_ttl(3600)
    indexes = client["ttl_test"]["predictions"].index_information().values()
    assert [i.get("expireAfterSeconds") for i in indexes if i["key"] == [("timestamp", 1)]] == [3600]
    source.ensure_ttl(3600)  # unchanged: nothing to do


def test_the_prediction_store_still_writes_once_the_timestamp_index_is_a_ttl_one() -> None:
    """MongoDB refuses a plain index where a TTL one of the same key exists: the store must not stop on it."""
    from pymongo.errors import OperationFailure

    client = mongomock.MongoClient()
    collection = client["ttl_store"]["predictions"]
    collection.create_index("timestamp", expireAfterSeconds=3600)
    real = type(collection).create_index

    def strict(self: Any, keys: Any, **options: Any) -> Any:  # what a real MongoDB answers (IndexOptionsConflict)
        if keys == "timestamp" and "expireAfterSeconds" not in options:
            raise OperationFailure("An existing index has the same name but different options", code=85)
        return real(self, keys, **options)

    store = MongoStore("mongodb://localhost:27017/ttl_store", client_factory=lambda *a, **k: client)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(collection), "create_index", strict)
        store.write_many([make_entry({"x": 1}, 0.5, "run-a", "http", "r-1", NOW, customer_id="c-1")])
    assert store.count() == 1
