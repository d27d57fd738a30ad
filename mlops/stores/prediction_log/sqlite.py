"""The prediction log in a SQLite file (the native default): table `predictions`, table `report_summaries`."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlops import json_text
from mlops.stores.ids import iso, utc_now_iso
from mlops.stores.prediction_log.entry import PREDICTIONS, SUMMARIES
from mlops.stores.sqlite_file import SQLiteFile, in_transaction

WHAT, SETTING = "prediction store", "PREDICTION_LOG_URI"


log = logging.getLogger(__name__)


def create_schema(connection: sqlite3.Connection) -> None:
    """The predictions table and its indexes; the outcome store, which shares the file, applies it too."""
    connection.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS {PREDICTIONS} (
            prediction_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            source TEXT NOT NULL,
            model_run_id TEXT NOT NULL,
            input TEXT NOT NULL,
            prediction REAL NOT NULL,
            customer_id TEXT
        );
        CREATE INDEX IF NOT EXISTS {PREDICTIONS}_timestamp ON {PREDICTIONS} (timestamp);
        CREATE TABLE IF NOT EXISTS {SUMMARIES} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            summary TEXT NOT NULL
        );
        """
    )
    # logs written before outcomes existed lack the column outcomes join on: add it (old rows stay NULL)
    columns = {row[1] for row in connection.execute(f"PRAGMA table_info({PREDICTIONS})")}
    if "customer_id" not in columns:
        connection.execute(f"ALTER TABLE {PREDICTIONS} ADD COLUMN customer_id TEXT")
    connection.executescript(
        f"""
        CREATE INDEX IF NOT EXISTS {PREDICTIONS}_request ON {PREDICTIONS} (request_id);
        CREATE INDEX IF NOT EXISTS {PREDICTIONS}_customer ON {PREDICTIONS} (customer_id, timestamp);
        """
    )


class SQLiteStore:
    """SQLite file (WAL, so readers do not block the writer); writes through one kept connection (SQLiteFile)."""

    def __init__(self, uri: str, busy_timeout_s: float = 2.0) -> None:
        self.file = SQLiteFile(uri, [create_schema], WHAT, SETTING, busy_timeout_s=busy_timeout_s)
        self.uri = uri
        self.path = self.file.path

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None:
        rows = [
            (
                e["prediction_id"],
                e["request_id"],
                e["timestamp"],
                e["source"],
                e["model_run_id"],
                json_text.dumps(e["input"]).decode(),
                float(e["prediction"]),
                e.get("customer_id"),
            )
            for e in entries
        ]
        insert = f"INSERT OR IGNORE INTO {PREDICTIONS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        self.file.write(lambda c: in_transaction(c, lambda t: t.executemany(insert, rows)))

    def by_request(self, request_id: str, limit: int) -> list[dict[str, Any]]:
        """The entries logged under one request id (indexed), oldest first: what a decision replay reads."""
        query = f"SELECT * FROM {PREDICTIONS} WHERE request_id = ? ORDER BY timestamp, rowid LIMIT ?"
        return self._decoded(query, [request_id, int(limit)])

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]:
        query = f"SELECT * FROM {PREDICTIONS} WHERE timestamp >= ?"
        params: list[Any] = [iso(since)]
        if until is not None:
            query += " AND timestamp < ?"
            params.append(iso(until))
        query += " ORDER BY timestamp DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        return list(reversed(self._decoded(query, params)))

    def _decoded(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            rows, unreadable = [], 0
            for row in connection.execute(query, params):
                try:
                    decoded = {
                        **dict(row),
                        "timestamp": datetime.fromisoformat(row["timestamp"]),
                        "input": json.loads(row["input"]),
                    }
                except (ValueError, TypeError):  # a row written by hand or by a broken tool: skipped, said
                    unreadable += 1
                    continue
                rows.append(decoded)
            if unreadable:
                log.warning("prediction log %s: %d unreadable row(s) skipped", self.file.path, unreadable)
            return rows

        return self.file.run(read)

    def count(self) -> int:
        return int(self.file.run(lambda c: c.execute(f"SELECT COUNT(*) FROM {PREDICTIONS}").fetchone()[0]))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        text = json.dumps(dict(summary), default=str)
        insert = f"INSERT INTO {SUMMARIES} (created_at, summary) VALUES (?, ?)"
        self.file.run(lambda c: c.execute(insert, (utc_now_iso(), text)))

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"SELECT created_at, summary FROM {SUMMARIES} ORDER BY id DESC"
        rows = self.file.run(lambda c: c.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall())
        return [{"created_at": datetime.fromisoformat(t), **json.loads(s)} for t, s in reversed(rows)]

    def close(self) -> None:
        self.file.close()
