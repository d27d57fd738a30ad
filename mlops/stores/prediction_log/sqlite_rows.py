"""How a prediction-log entry is laid out in SQLite, and back: the one place that knows the physical row.

Why this layout (measured by bench/bench_log_growth.py; the first layout stored every field as text, ~880 bytes a
row, and indexed (customer_id, timestamp), whose random inserts grew the write cost with the log):
- `seq` (the rowid) is the order rows were logged in; ids and times are appended to their indexes in order too.
- prediction and request ids that are 32 hex digits (every id the platform makes) are kept as their 16 bytes
  (`pack_id`); any other id a client sends is kept as text. Both read back as the text they were given.
- the time is integer microseconds since the epoch (8 bytes, compared as numbers, indexed).
- the model run and the feature layout (the input's column names, in order) are interned in small tables, so a row
  holds two small integers and its input as a JSON array of values (~120 bytes for a churn record, not ~480).
- the outcome join by customer reads table `customers` (the latest live prediction per customer, bounded by the
  number of customers, not by the log) and each row's `customer_prev` (that customer's previous live prediction),
  instead of an index of every row by customer: the log's write cost no longer grows with its length.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlops import json_text
from mlops.stores.ids import as_utc
from mlops.stores.prediction_log.entry import PREDICTIONS, SOURCES, SUMMARIES

CUSTOMERS, RUNS, LAYOUTS = "customers", "model_runs", "input_layouts"
LOGICAL = ("prediction_id", "request_id", "timestamp", "source", "model_run_id", "input", "prediction", "customer_id")
COLUMNS = "seq, prediction_id, request_id, at, source, run, layout, input, prediction, customer_id, customer_prev"
MIGRATE_CHUNK = 20_000
_HEX = frozenset("0123456789abcdef")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


def pack_id(value: str) -> bytes | str:
    """32 lowercase hex digits as their 16 bytes, anything else as given (both sort and compare as themselves)."""
    if len(value) == 32 and _HEX.issuperset(value):
        return bytes.fromhex(value)
    return value


def unpack_id(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def micros(moment: datetime | str) -> int:
    """Microseconds since the epoch, UTC (naive times are UTC, as everywhere in the stores)."""
    when = as_utc(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def moment(value: int) -> datetime:
    seconds, rest = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {PREDICTIONS} (
        seq INTEGER PRIMARY KEY,
        prediction_id BLOB NOT NULL,
        request_id BLOB NOT NULL,
        at INTEGER NOT NULL,
        source INTEGER NOT NULL,
        run INTEGER NOT NULL,
        layout INTEGER NOT NULL,
        input TEXT NOT NULL,
        prediction REAL NOT NULL,
        customer_id TEXT,
        customer_prev INTEGER
    )""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {PREDICTIONS}_id ON {PREDICTIONS} (prediction_id)",
    f"CREATE INDEX IF NOT EXISTS {PREDICTIONS}_at ON {PREDICTIONS} (at)",
    f"CREATE INDEX IF NOT EXISTS {PREDICTIONS}_request ON {PREDICTIONS} (request_id)",
    f"CREATE TABLE IF NOT EXISTS {CUSTOMERS} (customer_id TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID",
    f"CREATE TABLE IF NOT EXISTS {RUNS} (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE)",
    f"CREATE TABLE IF NOT EXISTS {LAYOUTS} (id INTEGER PRIMARY KEY, columns TEXT NOT NULL UNIQUE)",
    f"""CREATE TABLE IF NOT EXISTS {SUMMARIES} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        summary TEXT NOT NULL
    )""",
)


def create_schema(connection: sqlite3.Connection) -> None:
    """The tables and indexes; the outcome store and the archive, which share the file, apply it too. A log of the
    first layout is rewritten in this one (once, in one transaction: a crash leaves the old layout, done again)."""
    legacy = _columns(connection, PREDICTIONS)
    if legacy and "seq" not in legacy:
        connection.execute("BEGIN IMMEDIATE")
        try:
            _migrate(connection)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    for statement in SCHEMA:
        connection.execute(statement)


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


class Codec:
    """Entries to rows and rows to entries for one connection's file: caches the interned runs and layouts (they
    only ever grow, so a cached id stays right; an unknown one is looked up again)."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.layouts: dict[tuple[str, ...], int] = {}
        self.run_names: dict[int, str] = {}
        self.layout_columns: dict[int, tuple[str, ...]] = {}

    def forget(self) -> None:
        """After a rolled-back write: ids interned in it were never committed."""
        for cache in (self.runs, self.layouts, self.run_names, self.layout_columns):
            cache.clear()

    def _intern(self, connection: sqlite3.Connection, table: str, column: str, value: str) -> int:
        connection.execute(f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", (value,))
        return int(connection.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()[0])

    def run_id(self, connection: sqlite3.Connection, run: str) -> int:
        if run not in self.runs:
            self.runs[run] = self._intern(connection, RUNS, "run_id", run)
        return self.runs[run]

    def layout_id(self, connection: sqlite3.Connection, columns: tuple[str, ...]) -> int:
        if columns not in self.layouts:
            self.layouts[columns] = self._intern(connection, LAYOUTS, "columns", json.dumps(list(columns)))
        return self.layouts[columns]

    def row(self, connection: sqlite3.Connection, entry: Mapping[str, Any], prev: int | None) -> tuple[Any, ...]:
        """The stored row of an entry, but for `seq` (given by the caller). An entry it cannot lay out is a
        sqlite3.DataError: the entry's fault, which the writer isolates and quarantines, never an outage."""
        try:
            return self._row(connection, entry, prev)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise sqlite3.DataError(f"cannot log entry {entry.get('prediction_id')!r}: {error!r}") from error

    def _row(self, connection: sqlite3.Connection, entry: Mapping[str, Any], prev: int | None) -> tuple[Any, ...]:
        features = entry["input"]
        columns = tuple(features)
        return (
            pack_id(entry["prediction_id"]),
            pack_id(entry["request_id"]),
            micros(entry["timestamp"]),
            SOURCES.index(entry["source"]),
            self.run_id(connection, entry["model_run_id"]),
            self.layout_id(connection, columns),
            json_text.dumps([features[c] for c in columns]).decode(),
            float(entry["prediction"]),
            entry.get("customer_id"),
            prev,
        )

    def _names(self, connection: sqlite3.Connection, run: int, layout: int) -> tuple[str, tuple[str, ...]]:
        if run not in self.run_names:
            self.run_names.update(connection.execute(f"SELECT id, run_id FROM {RUNS}").fetchall())
        if layout not in self.layout_columns:
            for key, text in connection.execute(f"SELECT id, columns FROM {LAYOUTS}"):
                self.layout_columns[key] = tuple(json.loads(text))
        return self.run_names[run], self.layout_columns[layout]

    def entry(self, connection: sqlite3.Connection, row: Sequence[Any]) -> dict[str, Any]:
        """A stored row (in COLUMNS order) as the entry that was written, the time a datetime and the input a dict.
        Raises ValueError/KeyError/TypeError for a row no writer of this layout made."""
        _, pid, rid, at, source, run, layout, text, prediction, customer, _ = row
        run_name, columns = self._names(connection, run, layout)
        values = json.loads(text)
        if len(values) != len(columns):
            raise ValueError(f"input has {len(values)} values, layout {layout} {len(columns)} columns")
        return {
            "prediction_id": unpack_id(pid),
            "request_id": unpack_id(rid),
            "timestamp": moment(at),
            "source": SOURCES[source],
            "model_run_id": run_name,
            "input": dict(zip(columns, values, strict=True)),
            "prediction": prediction,
            "customer_id": customer,
        }


def insert(connection: sqlite3.Connection, codec: Codec, entries: Sequence[Mapping[str, Any]]) -> int:
    """Logs `entries` (inside the caller's transaction); an id already logged is skipped. Returns rows written.

    Live predictions with a customer id are chained: each row points at that customer's previous live prediction
    and `customers` at the newest, so the join by customer walks a few rows instead of an index of the whole log.
    The rows get their `seq` here, so a batch is one executemany; a batch holding an id already logged (a replay)
    is rolled back to its savepoint and written row by row, skipping those."""
    if not entries:
        return 0
    known = _latest(connection, {e["customer_id"] for e in entries if _chained(e)})
    last, rows = dict(known), []
    base = connection.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {PREDICTIONS}").fetchone()[0]
    for seq, entry in enumerate(entries, base + 1):
        chained = _chained(entry)
        rows.append((seq, *codec.row(connection, entry, last.get(entry["customer_id"]) if chained else None)))
        if chained:
            last[entry["customer_id"]] = seq
    connection.execute("SAVEPOINT log_batch")
    changes = connection.total_changes
    connection.executemany(f"INSERT OR IGNORE INTO {PREDICTIONS} ({COLUMNS}) VALUES ({_MARKS})", rows)
    if connection.total_changes - changes == len(rows):
        connection.execute("RELEASE log_batch")
    else:
        connection.execute("ROLLBACK TO log_batch")
        connection.execute("RELEASE log_batch")
        last = dict(known)
        rows = [r for r in (_insert_one(connection, codec, e, last) for e in entries) if r is not None]
    changed = [(customer, seq) for customer, seq in last.items() if known.get(customer) != seq]
    connection.executemany(
        f"INSERT INTO {CUSTOMERS} (customer_id, last) VALUES (?, ?) "
        "ON CONFLICT (customer_id) DO UPDATE SET last = excluded.last",
        changed,
    )
    return len(rows)


_MARKS = ", ".join("?" * len(COLUMNS.split(",")))  # every column, seq included
_MARKS_BUT_SEQ = ", ".join("?" * (len(COLUMNS.split(",")) - 1))


def _insert_one(
    connection: sqlite3.Connection, codec: Codec, entry: Mapping[str, Any], last: dict[str, int]
) -> int | None:
    """One entry, unless its id is logged already; returns its seq (None when skipped)."""
    chained = _chained(entry)
    prev = last.get(entry["customer_id"]) if chained else None
    cursor = connection.execute(
        f"INSERT OR IGNORE INTO {PREDICTIONS} ({COLUMNS}) VALUES (NULL, {_MARKS_BUT_SEQ})",
        codec.row(connection, entry, prev),
    )
    if cursor.rowcount != 1:
        return None
    seq = int(cursor.lastrowid or 0)
    if chained:
        last[entry["customer_id"]] = seq
    return seq


def _chained(entry: Mapping[str, Any]) -> bool:
    return entry.get("customer_id") is not None and entry["source"] != "shadow"


def _latest(connection: sqlite3.Connection, customers: Iterable[str]) -> dict[str, int]:
    wanted, found = list(customers), {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT customer_id, last FROM {CUSTOMERS} WHERE customer_id IN ({marks})"
        found.update(connection.execute(query, chunk))
    return found


def latest_for_customer(
    connection: sqlite3.Connection, customer_id: str, until: datetime, max_steps: int = 100_000
) -> tuple[Any, ...] | None:
    """The customer's newest live prediction logged at or before `until` (a row in COLUMNS order), or None.

    Walks the customer's chain from the newest. Rows are chained in the order they were logged, which is their time
    order but for a replayed spool; so after the first row at or before `until` the walk looks 16 rows further for
    a later one."""
    start = connection.execute(f"SELECT last FROM {CUSTOMERS} WHERE customer_id = ?", (customer_id,)).fetchone()
    bound, best, seq, after_hit = micros(until), None, start[0] if start else None, 0
    for _ in range(max_steps):
        if seq is None or after_hit > 16:
            break
        row = connection.execute(f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE seq = ?", (seq,)).fetchone()
        if row is None or row[9] != customer_id:  # archived (or its seq reused): the chain ends here
            break
        if row[3] <= bound:
            best = row if best is None or row[3] > best[3] else best
        if best is not None:
            after_hit += 1
        seq = row[10]
    return best


def forget_customers(connection: sqlite3.Connection, rows: Iterable[tuple[str, int]]) -> None:
    """Drops `customers` entries that point at deleted rows (customer id, seq): the table stays bounded by the
    customers seen within the retention window."""
    connection.executemany(f"DELETE FROM {CUSTOMERS} WHERE customer_id = ? AND last = ?", list(rows))


def _migrate(connection: sqlite3.Connection) -> None:
    """Rows of the first layout (every field text) rewritten in this one, in chunks, in the caller's transaction."""
    legacy = f"{PREDICTIONS}_v1"
    total = connection.execute(f"SELECT COUNT(*) FROM {PREDICTIONS}").fetchone()[0]
    log.warning("prediction log: rewriting %d row(s) of the first layout in the compact one (once)", total)
    connection.execute(f"ALTER TABLE {PREDICTIONS} RENAME TO {legacy}")
    for index in ("timestamp", "request", "customer"):
        connection.execute(f"DROP INDEX IF EXISTS {PREDICTIONS}_{index}")
    for statement in SCHEMA:
        connection.execute(statement)
    customer = "customer_id" if "customer_id" in _columns(connection, legacy) else "NULL"
    select = (
        f"SELECT rowid, prediction_id, request_id, timestamp, source, model_run_id, input, prediction, {customer} "
        f"FROM {legacy} WHERE rowid > ? ORDER BY rowid LIMIT {MIGRATE_CHUNK}"
    )
    codec, done, after = Codec(), 0, -1
    while rows := connection.execute(select, (after,)).fetchall():
        entries = [dict(zip(("rowid", *LOGICAL), r, strict=True)) for r in rows]
        for e in entries:
            e["input"] = json.loads(e["input"])
        insert(connection, codec, sorted(entries, key=lambda e: e["timestamp"]))
        after, done = rows[-1][0], done + len(rows)
        log.warning("prediction log: %d / %d row(s) rewritten", done, total)
    connection.execute(f"DROP TABLE {legacy}")
