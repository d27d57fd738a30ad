"""The SQLite prediction log's compact layout (mlops.stores.prediction_log.sqlite_rows): entries read back as they
were written, a log of the first layout is rewritten once, the join by customer walks the customer's chain, the
archive forgets what it deleted, and a row stays under 300 bytes on disk."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlops.archive.sources import TABLES, SQLiteSource
from mlops.data import clean, generate_bank_churners
from mlops.outcomes import Outcome
from mlops.spec import FeatureSpec
from mlops.stores.ids import iso, new_id
from mlops.stores.outcomes import SQLiteOutcomeStore
from mlops.stores.prediction_log import SQLiteStore, make_entry

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_entries_read_back_as_written_whatever_their_ids_and_layouts(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    written = [
        make_entry({"age": 41, "gender": "F", "limit": 1.5}, 0.25, "run-a", "http", new_id(), at(0), "c1"),
        make_entry({"gender": None, "age": 50}, 0.75, "run-b", "kinesis", "client-req-7", at(1), None, "my-id-1"),
        make_entry({"age": 41, "gender": "F", "limit": 2.0}, 0.5, "run-a", "shadow", "client-req-7", at(2), "c1"),
    ]
    store.write_many(written)
    store.write_many(written[:1])  # a replay: kept once
    read = store.read(at(-1), None, None)
    assert [{**e, "timestamp": iso(e["timestamp"])} for e in read] == written
    assert [e["input"] for e in store.by_request("client-req-7", 10)] == [written[1]["input"], written[2]["input"]]
    with sqlite3.connect(store.path) as raw:  # ids of 32 hex digits are kept as their 16 bytes, others as text
        kinds = raw.execute("SELECT typeof(prediction_id), length(prediction_id) FROM predictions ORDER BY seq")
        assert kinds.fetchall() == [("blob", 16), ("text", 7), ("blob", 16)]
        assert raw.execute("SELECT input FROM predictions WHERE seq = 1").fetchone()[0] == '[41,"F",1.5]'
        assert raw.execute("SELECT COUNT(*) FROM model_runs").fetchone()[0] == 2


def test_a_log_of_the_first_layout_is_rewritten_once_and_joins_as_before(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    rows = [
        (f"{i:032x}", f"req-{i}", iso(at(i)), "http", "run-1", json.dumps({"age": 40 + i}), i / 10, "c9")
        for i in range(5)
    ]
    with sqlite3.connect(path) as connection:  # the first layout, every field text
        connection.execute(
            "CREATE TABLE predictions (prediction_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, timestamp TEXT "
            "NOT NULL, source TEXT NOT NULL, model_run_id TEXT NOT NULL, input TEXT NOT NULL, prediction REAL "
            "NOT NULL, customer_id TEXT)"
        )
        connection.execute("CREATE INDEX predictions_customer ON predictions (customer_id, timestamp)")
        connection.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    store = SQLiteStore(f"sqlite:///{path}")
    read = store.read(at(-1), None, None)
    assert [(e["prediction_id"], e["input"], e["customer_id"]) for e in read] == [
        (r[0], json.loads(r[5]), "c9") for r in rows
    ]
    report = SQLiteOutcomeStore(f"sqlite:///{path}").ingest([Outcome(None, "c9", 1, at(2.5))])
    assert report.settled == 1
    with sqlite3.connect(path) as raw:
        settled = raw.execute("SELECT prediction_id FROM settlements").fetchall()
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert settled == [(rows[2][0],)]  # the newest prediction at or before the observation
    assert "predictions_v1" not in tables and store.count() == 5


def test_the_join_by_customer_takes_the_newest_prediction_before_the_observation(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    store, outcomes = SQLiteStore(uri), SQLiteOutcomeStore(uri)
    for minute, rid in ((0, "r0"), (10, "r10"), (20, "r20")):
        store.write_many([make_entry({"x": minute}, 0.1, "run", "http", rid, at(minute), "c1")])
    store.write_many([make_entry({"x": 15}, 0.1, "run", "http", "r15", at(15), "c1")])  # a spool replayed late
    store.write_many([make_entry({"x": 16}, 0.9, "run", "shadow", "r15", at(16), "c1")])  # never chosen
    report = outcomes.ingest([Outcome(None, "c1", 1, at(17)), Outcome(None, "c1", 0, at(5))])
    assert report.settled == 2
    chosen = {s["predicted_at"]: s["source"] for s in outcomes.settled()}
    assert chosen == {iso(at(15)): "http", iso(at(16)): "shadow", iso(at(0)): "http"}  # the twin settled with r15
    assert outcomes.ingest([Outcome(None, "c1", 1, at(-5))]).unknown == 1  # nothing logged before it


def test_the_archive_forgets_the_customers_whose_newest_prediction_it_deleted(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    store = SQLiteStore(uri)
    store.write_many([make_entry({"x": 1}, 0.1, "run", "http", f"r{i}", at(i), f"c{i % 2}") for i in range(4)])
    source = SQLiteSource(uri)
    predictions = next(t for t in TABLES if t.name == "predictions")
    old = source.oldest(predictions, at(2.5), 10)
    assert [r["request_id"] for r in old] == ["r0", "r1", "r2"] and isinstance(old[0]["input"], str)
    assert source.count_before(predictions, at(2.5)) == 3
    assert source.delete(predictions, [r["prediction_id"] for r in old]) == 3
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT customer_id FROM customers").fetchall() == [("c1",)]  # c1's newest is r3
    assert SQLiteOutcomeStore(uri).ingest([Outcome(None, "c0", 1, at(9))]).unknown == 1


def test_a_logged_churn_record_costs_under_300_bytes_on_disk(tmp_path: Path) -> None:
    spec = FeatureSpec.load(ROOT / "features.yaml")
    frame = clean(generate_bank_churners(2000, seed=3), spec)
    records: list[dict[str, Any]] = [{c: r[c] for c in spec.feature_columns} for r in frame.to_dict("records")]
    store = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    rows = 40_000
    for start in range(0, rows, 50):
        store.write_many(
            [
                make_entry(records[i % 2000], 0.3, "a" * 32, "http", new_id(), at(i / 60), f"{7e8 + i % 2000:.0f}")
                for i in range(start, start + 50)
            ]
        )
    with sqlite3.connect(store.path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (
            raw.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
    assert (pages - free) * size / rows < 300
