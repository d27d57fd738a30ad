"""The prediction log in a SQLite file (the native default): table `predictions` (its layout: sqlite_rows), table
`report_summaries`."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlops.stores.ids import utc_now_iso
from mlops.stores.prediction_log.entry import PREDICTIONS, SUMMARIES
from mlops.stores.prediction_log.sqlite_rows import COLUMNS, Codec, create_schema, insert, micros, pack_id
from mlops.stores.sqlite_file import SQLiteFile, in_transaction

__all__ = ["SQLiteStore", "create_schema"]

WHAT, SETTING = "prediction store", "PREDICTION_LOG_URI"


log = logging.getLogger(__name__)


class SQLiteStore:
    """SQLite file (WAL, so readers do not block the writer); writes through one kept connection (SQLiteFile)."""

    def __init__(self, uri: str, busy_timeout_s: float = 2.0) -> None:
        self.file = SQLiteFile(uri, [create_schema], WHAT, SETTING, busy_timeout_s=busy_timeout_s)
        self.uri = uri
        self.path = self.file.path
        self.codec = Codec()

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None:
        try:
            self.file.write(lambda c: in_transaction(c, lambda t: insert(t, self.codec, entries)))
        except BaseException:
            self.codec.forget()  # runs or layouts it interned were rolled back with the rows
            raise

    def by_request(self, request_id: str, limit: int) -> list[dict[str, Any]]:
        """The entries logged under one request id (indexed), oldest first: what a decision replay reads."""
        query = f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE request_id = ? ORDER BY at, seq LIMIT ?"
        return self._decoded(query, [pack_id(request_id), int(limit)])

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]:
        """The window's newest `limit` entries (through the time index), oldest first."""
        query = f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE at >= ?"
        params: list[Any] = [micros(since)]
        if until is not None:
            query += " AND at < ?"
            params.append(micros(until))
        query += " ORDER BY at DESC, seq DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        return list(reversed(self._decoded(query, params)))

    def _decoded(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows, unreadable = [], 0
            for row in connection.execute(query, params):
                try:
                    rows.append(self.codec.entry(connection, row))
                except (ValueError, TypeError, KeyError, IndexError):  # written by hand or a broken tool: said
                    unreadable += 1
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
