"""The prediction log: both backends for real (SQLite file, mongomock; a real MongoDB when CI provides one),
the background writer, and the spool that keeps every accepted entry through a store outage."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock
import pytest

from mlops.stores.prediction_log import MongoStore, PredictionLog, SQLiteStore, StoreUnavailable, make_entry, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(i: int, when: datetime | None = None, source: str = "http") -> dict[str, Any]:
    return make_entry(
        {"customer_age": 40 + i % 10, "gender": "F"},
        i / 1000,
        "run-1",
        source,
        f"req-{i}",
        timestamp=when or T0 + timedelta(seconds=i),
    )


@pytest.fixture
def mongo_uri() -> str | None:
    """A real MongoDB for these tests when CI provides one (PREDICTION_LOG_TEST_MONGODB_URI)."""
    return os.environ.get("PREDICTION_LOG_TEST_MONGODB_URI") or None


def _stores() -> list[str]:
    return ["sqlite", "mongomock", "mongodb"]


@pytest.fixture(params=_stores())
def store(request: pytest.FixtureRequest, tmp_path: Path, mongo_uri: str | None) -> Iterator[Any]:
    if request.param == "sqlite":
        made: Any = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    elif request.param == "mongomock":
        made = MongoStore("mongodb://localhost:27017/testlog", client_factory=mongomock.MongoClient)
    else:
        if not mongo_uri:
            pytest.skip("PREDICTION_LOG_TEST_MONGODB_URI is not set (CI provides a MongoDB)")
        import pymongo

        database = f"predlog_test_{os.getpid()}_{id(request)}"
        made = MongoStore(mongo_uri, database=database)
        request.addfinalizer(lambda: pymongo.MongoClient(mongo_uri).drop_database(database))
    yield made
    made.close()


# ---------------------------------------------------------------------------------------------- stores
def test_store_round_trip_window_limit_and_count(store: Any) -> None:
    entries = [entry(i) for i in range(20)]
    store.write_many(entries)
    assert store.count() == 20
    window = store.read(T0 + timedelta(seconds=5), T0 + timedelta(seconds=10), None)
    assert [e["request_id"] for e in window] == [f"req-{i}" for i in range(5, 10)]
    first = window[0]
    assert first["input"] == {"customer_age": 45, "gender": "F"}
    assert first["prediction"] == pytest.approx(0.005)
    assert first["source"] == "http" and first["model_run_id"] == "run-1"
    assert first["timestamp"] == T0 + timedelta(seconds=5)
    assert first["timestamp"].tzinfo is not None
    newest = store.read(T0, None, 3)
    assert [e["request_id"] for e in newest] == ["req-17", "req-18", "req-19"]
    # naive datetimes are UTC
    assert len(store.read(datetime(2026, 1, 1, 0, 0, 10), None, None)) == 10


def test_store_ignores_an_entry_it_already_holds(store: Any) -> None:
    entries = [entry(i) for i in range(5)]
    store.write_many(entries[:3])
    store.write_many(entries)  # a replay after a half-finished write
    assert store.count() == 5


def test_store_keeps_report_summaries_apart(store: Any) -> None:
    store.write_many([entry(1)])
    store.write_summary({"drift_share": 0.25, "rows": 100})
    store.write_summary({"drift_share": 0.5, "rows": 200})
    summaries = store.read_summaries()
    assert [s["rows"] for s in summaries] == [100, 200]
    assert isinstance(summaries[0]["created_at"], datetime)
    assert store.count() == 1
    assert [s["rows"] for s in store.read_summaries(limit=1)] == [200]


def test_open_store_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'x.sqlite'}"), SQLiteStore)
    with pytest.raises(ValueError, match="PREDICTION_LOG_URI"):
        open_store("postgres://nope")


def test_make_entry_refuses_an_unknown_source() -> None:
    with pytest.raises(ValueError, match="source"):
        make_entry({}, 0.1, "run", "carrier-pigeon", "r")


def test_sqlite_store_down_when_locked_names_the_setting(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.sqlite"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout_s=0.1)
    store.write_many([entry(0)])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="PREDICTION_LOG_URI"):
            store.write_many([entry(1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.write_many([entry(1)])
    assert store.count() == 2


# --------------------------------------------------------------------------------------------- the log
class FlakyStore:
    """A real SQLite store behind a switch: while `down`, every write fails like a dead server would."""

    def __init__(self, inner: SQLiteStore, fail_after: int | None = None) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.down = threading.Event()
        self.fail_after = fail_after  # write this many entries of a batch, then fail (a half-finished write)
        self.attempts = 0

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.attempts += 1
        if self.down.is_set():
            if self.fail_after:
                self.inner.write_many(entries[: self.fail_after])
            raise StoreUnavailable(f"prediction store unavailable at PREDICTION_LOG_URI={self.uri} (test)")
        self.inner.write_many(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_log_writes_in_the_background(tmp_path: Path) -> None:
    log = PredictionLog(SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}"), tmp_path / "spool")
    log.submit(entry(i) for i in range(1000))
    assert log.flush(10)
    assert log.count() == 1000
    assert log.written == 1000 and log.spooled == 0
    assert len(log.read_predictions(T0, T0 + timedelta(seconds=100))) == 100
    assert log.close()


def test_outage_spools_then_replays_in_order_and_loses_nothing(tmp_path: Path) -> None:
    flaky = FlakyStore(SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}"), fail_after=7)
    log = PredictionLog(flaky, tmp_path / "spool", batch_size=50, retry_interval_s=0.05)
    log.submit(entry(i) for i in range(100))
    assert log.flush(10)
    flaky.down.set()
    for start in range(100, 400, 25):  # traffic during the outage
        log.submit(entry(i) for i in range(start, start + 25))
    assert not log.flush(0.5)  # cannot be in the store yet
    assert log.spooled >= 300 - 7 * flaky.attempts  # went to disk, not lost
    assert list((tmp_path / "spool").glob("*.jsonl"))
    flaky.down.clear()
    assert log.flush(15)
    assert log.count() == 400
    stored = log.read_predictions(T0)
    assert [e["request_id"] for e in stored] == [f"req-{i}" for i in range(400)]
    assert not list((tmp_path / "spool").iterdir())
    assert log.close()


def test_close_during_outage_leaves_the_spool_for_the_next_start(tmp_path: Path) -> None:
    database = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    flaky = FlakyStore(database)
    flaky.down.set()
    log = PredictionLog(flaky, tmp_path / "spool", retry_interval_s=0.05)
    log.submit(entry(i) for i in range(60))
    assert not log.close(timeout=0.5)
    assert database.count() == 0
    assert sum(len(p.read_text().splitlines()) for p in (tmp_path / "spool").glob("*.jsonl")) == 60
    reopened = PredictionLog(database, tmp_path / "spool", retry_interval_s=0.05)
    assert reopened.flush(10)
    assert database.count() == 60
    assert reopened.close()


def test_a_replay_claim_left_by_a_dead_process_is_released(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-00000001.jsonl.replaying-999999999").write_text(
        "\n".join(__import__("json").dumps(entry(i)) for i in range(3)) + "\n"
    )
    log = PredictionLog(SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}"), spool, retry_interval_s=0.05)
    assert log.flush(10)
    assert log.count() == 3
    log.close()


def test_another_replicas_claim_is_left_alone_until_it_is_stale(tmp_path: Path) -> None:
    """Compose replicas share one state volume and cannot see each other's pids: a claim of another host is only
    released once it is STALE_CLAIM_S old (its owner died mid-replay), never while that replica may still replay."""
    import os

    from mlops.stores.prediction_log.spool import STALE_CLAIM_S, Spool

    spool = tmp_path / "spool"
    spool.mkdir()
    lines = "\n".join(__import__("json").dumps(entry(i)) for i in range(3)) + "\n"
    fresh = spool / "00000000000000000001-1-00000001.jsonl.replaying-other_host-1"
    stale = spool / "00000000000000000002-1-00000001.jsonl.replaying-other_host-1"
    fresh.write_text(lines)
    stale.write_text(lines)
    old = __import__("time").time() - STALE_CLAIM_S - 5
    os.utime(stale, (old, old))  # the ctime cannot be set; stat() is patched below to age it
    real_stat = Path.stat

    def aged(self: Path, **kwargs: object) -> os.stat_result:
        result = real_stat(self, **kwargs)
        if self.name == stale.name:
            values = list(result)
            values[9] = int(old)  # st_ctime
            return os.stat_result(values)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "stat", aged)
        Spool(spool)
    assert fresh.exists()  # another replica may be replaying it right now
    assert not stale.exists() and (spool / "00000000000000000002-1-00000001.jsonl").exists()


def test_submit_after_close_is_refused(tmp_path: Path) -> None:
    log = PredictionLog(SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}"), tmp_path / "spool")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.submit([entry(1)])
