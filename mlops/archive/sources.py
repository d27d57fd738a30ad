"""Where the archive reads and deletes: the prediction log's tables in SQLite or MongoDB, behind one small protocol.

Every row comes back JSON-ready and flat (times as ISO 8601 UTC text, a prediction's input as JSON text), so the
Parquet written is the same whichever store it came from.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mlops.stores.ids import as_utc, iso
from mlops.stores.outcomes.report import ARCHIVE_STATE, OUTCOMES, SETTLEMENTS
from mlops.stores.outcomes.sqlite import create_outcome_schema
from mlops.stores.prediction_log.entry import PREDICTIONS
from mlops.stores.prediction_log.sqlite_rows import COLUMNS, Codec, create_schema, forget_customers, micros, pack_id
from mlops.stores.sqlite_file import SQLiteFile, in_transaction

HORIZON = "archived_before"


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # unique: what a chunk is deleted by
    time: str  # what the horizon is compared with (indexed in both stores)
    by_run: bool  # partitioned by model_run_id too


# settlements first: they copy what the metrics need, so the log's window metrics never see one without the other
TABLES = (
    Table(SETTLEMENTS, "prediction_id", "predicted_at", True),
    Table(OUTCOMES, "outcome_id", "received_at", False),
    Table(PREDICTIONS, "prediction_id", "timestamp", True),
)


class ArchiveSource(Protocol):
    uri: str

    def oldest(self, table: Table, before: datetime, limit: int) -> list[dict[str, Any]]: ...

    def delete(self, table: Table, keys: Sequence[str]) -> int: ...

    def count_before(self, table: Table, before: datetime) -> int: ...

    def horizon(self) -> str | None: ...

    def set_horizon(self, value: str) -> None: ...

    def close(self) -> None: ...


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Times as ISO text, the input as JSON text: one Parquet schema for both stores."""
    flat = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, dict):
            value = json.dumps(value, separators=(",", ":"), default=str)
        flat[name] = value
    return flat


class SQLiteSource:
    """The predictions table is read and deleted through its layout (sqlite_rows); the others as they are."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.file = SQLiteFile(uri, [create_schema, create_outcome_schema], "prediction store", "PREDICTION_LOG_URI")
        self.codec = Codec()

    def oldest(self, table: Table, before: datetime, limit: int) -> list[dict[str, Any]]:
        if table.name == PREDICTIONS:
            query = f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE at < ? ORDER BY at, seq LIMIT ?"

            def entries(connection: sqlite3.Connection) -> list[dict[str, Any]]:
                rows = connection.execute(query, (micros(before), int(limit)))
                return [_flat(self.codec.entry(connection, row)) for row in rows]

            return self.file.run(entries)
        query = f"SELECT * FROM {table.name} WHERE {table.time} < ? ORDER BY {table.time}, {table.key} LIMIT ?"

        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query, (iso(before), int(limit)))]

        return self.file.run(read)

    def delete(self, table: Table, keys: Sequence[str]) -> int:
        def delete(connection: sqlite3.Connection) -> int:
            if table.name == PREDICTIONS:
                query = f"DELETE FROM {PREDICTIONS} WHERE prediction_id = ? RETURNING customer_id, seq"
                gone = [row for k in keys for row in connection.execute(query, (pack_id(k),)).fetchall()]
                forget_customers(connection, [(c, seq) for c, seq in gone if c is not None])
                return len(gone)
            before = connection.total_changes
            connection.executemany(f"DELETE FROM {table.name} WHERE {table.key} = ?", [(k,) for k in keys])
            return connection.total_changes - before

        return self.file.write(lambda c: in_transaction(c, delete))

    def count_before(self, table: Table, before: datetime) -> int:
        if table.name == PREDICTIONS:
            query, bound = f"SELECT COUNT(*) FROM {PREDICTIONS} WHERE at < ?", micros(before)
        else:
            query, bound = f"SELECT COUNT(*) FROM {table.name} WHERE {table.time} < ?", iso(before)
        return int(self.file.run(lambda c: c.execute(query, (bound,)).fetchone()[0]))

    def horizon(self) -> str | None:
        query = f"SELECT value FROM {ARCHIVE_STATE} WHERE name = ?"
        row = self.file.run(lambda c: c.execute(query, (HORIZON,)).fetchone())
        return row[0] if row else None

    def set_horizon(self, value: str) -> None:
        upsert = f"INSERT OR REPLACE INTO {ARCHIVE_STATE} (name, value) VALUES (?, ?)"
        self.file.write(lambda c: c.execute(upsert, (HORIZON, value)))

    def close(self) -> None:
        self.file.close()


class MongoSource:
    """Collections of the same names; `_id` is each table's key. Predictions' `timestamp` is a BSON date, the
    other tables' times ISO text (as the outcome store writes them)."""

    def __init__(self, uri: str, client_factory: Callable[..., Any] | None = None, timeout_ms: int = 5000) -> None:
        import pymongo
        from pymongo.uri_parser import parse_uri

        from mlops.stores.base import unavailable

        self.uri = uri
        self._errors = (pymongo.errors.PyMongoError,)
        self._unavailable = unavailable
        factory = client_factory or pymongo.MongoClient
        self._client = factory(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True)
        self._db = self._client[parse_uri(uri).get("database") or "mlops"]

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except self._errors as error:
            raise self._unavailable("prediction store", "PREDICTION_LOG_URI", self.uri, error) from error

    @staticmethod
    def _bound(table: Table, before: datetime) -> Any:
        return as_utc(before) if table.name == PREDICTIONS else iso(before)

    def oldest(self, table: Table, before: datetime, limit: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            cursor = (
                self._db[table.name]
                .find({table.time: {"$lt": self._bound(table, before)}})
                .sort([(table.time, 1), ("_id", 1)])
                .limit(int(limit))
            )
            return [_flat({table.key: d.pop("_id"), **d}) for d in cursor]

        return self._guard(read)

    def delete(self, table: Table, keys: Sequence[str]) -> int:
        return int(self._guard(lambda: self._db[table.name].delete_many({"_id": {"$in": list(keys)}}).deleted_count))

    def count_before(self, table: Table, before: datetime) -> int:
        query = {table.time: {"$lt": self._bound(table, before)}}
        return int(self._guard(lambda: self._db[table.name].count_documents(query)))

    def horizon(self) -> str | None:
        found = self._guard(lambda: self._db[ARCHIVE_STATE].find_one({"_id": HORIZON}))
        return found["value"] if found else None

    def set_horizon(self, value: str) -> None:
        self._guard(lambda: self._db[ARCHIVE_STATE].replace_one({"_id": HORIZON}, {"value": value}, upsert=True))

    def ensure_ttl(self, seconds: int) -> None:
        """A TTL index on predictions' `timestamp`: MongoDB deletes what the archive has not taken `seconds` after
        it was logged (a safety net set later than the retention horizon). The prediction store's plain index of
        that key is changed in place (`collMod`), since MongoDB keeps one index per key pattern."""
        collection = self._db[PREDICTIONS]

        def ensure() -> None:
            found = [i for i in collection.index_information().values() if i.get("key") == [("timestamp", 1)]]
            if not found:
                collection.create_index("timestamp", expireAfterSeconds=int(seconds))
            elif found[0].get("expireAfterSeconds") != int(seconds):
                index = {"keyPattern": {"timestamp": 1}, "expireAfterSeconds": int(seconds)}
                self._db.command({"collMod": PREDICTIONS, "index": index})

        self._guard(ensure)

    def close(self) -> None:
        self._client.close()


def open_source(uri: str) -> SQLiteSource | MongoSource:
    if uri.startswith("sqlite:///"):
        return SQLiteSource(uri)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoSource(uri)
    raise ValueError(f"PREDICTION_LOG_URI={uri!r}: expected sqlite:///path or mongodb://host:port/database")
