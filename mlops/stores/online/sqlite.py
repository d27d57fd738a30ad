"""The online store in a SQLite file (the native default): one table keyed by (dataset, customer_id)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mlops.stores.ids import utc_now_iso
from mlops.stores.online.base import SCAN_BATCH, SETTING, WHAT, OnlineRow, OnlineStoreUnavailable, down, dumps
from mlops.stores.sqlite_file import SQLiteFile, in_transaction


def _schema(connection: sqlite3.Connection) -> None:
    connection.executescript(
        """
        CREATE TABLE IF NOT EXISTS online_features (
            dataset TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            snapshot TEXT NOT NULL,
            features TEXT NOT NULL,
            materialized_at TEXT NOT NULL,
            PRIMARY KEY (dataset, customer_id)
        );
        CREATE TABLE IF NOT EXISTS materializations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dataset TEXT NOT NULL,
            snapshot TEXT NOT NULL,
            rows INTEGER NOT NULL,
            changed INTEGER NOT NULL,
            at TEXT NOT NULL
        );
        """
    )


class SQLiteOnlineStore:
    """One table keyed by (dataset, customer_id); a connection per call (any thread, outages surface per call)."""

    def __init__(self, uri: str, busy_timeout_s: float = 2.0) -> None:
        self.file = SQLiteFile(uri, [_schema], WHAT, SETTING, OnlineStoreUnavailable, busy_timeout_s)
        self.uri = uri
        self.path = self.file.path
        self.busy_timeout_s = busy_timeout_s
        self._ready = False
        self._local = threading.local()

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        result = self.file.run(action)
        self._ready = True
        return result

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int:
        now = utc_now_iso()
        payload = [(dataset, customer, snapshot, dumps(features), now) for customer, features in rows]

        def write(connection: sqlite3.Connection) -> int:
            before = connection.total_changes
            # an unchanged row keeps its time: re-materializing a snapshot is a no-op
            connection.executemany(
                "INSERT INTO online_features VALUES (?, ?, ?, ?, ?) ON CONFLICT (dataset, customer_id) DO UPDATE "
                "SET snapshot = excluded.snapshot, features = excluded.features, "
                "materialized_at = excluded.materialized_at "
                "WHERE online_features.snapshot != excluded.snapshot "
                "OR online_features.features != excluded.features",
                payload,
            )
            changed = connection.total_changes - before
            connection.execute(
                "INSERT INTO materializations (dataset, snapshot, rows, changed, at) VALUES (?, ?, ?, ?, ?)",
                (dataset, snapshot, len(payload), changed, now),
            )
            return changed

        return int(self._run(lambda c: in_transaction(c, write)))

    def get(self, dataset: str, customer_id: str) -> OnlineRow | None:
        """One lookup on this thread's own read connection (opening one per request cost more than the query)."""
        if not self._ready:
            self._run(lambda c: None)  # the file and its tables exist before the first read
        reader = getattr(self._local, "reader", None)
        try:
            if reader is None:
                reader = self._local.reader = sqlite3.connect(
                    self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
                )
            found = reader.execute(
                "SELECT customer_id, features, snapshot, materialized_at FROM online_features "
                "WHERE dataset = ? AND customer_id = ?",
                (dataset, customer_id),
            ).fetchone()
        except sqlite3.Error as error:
            self._local.reader = None  # reconnect on the next call: the file may be back
            if reader is not None:
                reader.close()
            raise down(self.uri, error) from error
        return None if found is None else OnlineRow(found[0], json.loads(found[1]), found[2], found[3])

    def scan(self, dataset: str) -> Iterator[OnlineRow]:
        last = ""
        while True:
            page = self._run(
                lambda c, after=last: c.execute(
                    "SELECT customer_id, features, snapshot, materialized_at FROM online_features "
                    "WHERE dataset = ? AND customer_id > ? ORDER BY customer_id LIMIT ?",
                    (dataset, after, SCAN_BATCH),
                ).fetchall()
            )
            if not page:
                return
            for customer, features, snapshot, at in page:
                yield OnlineRow(customer, json.loads(features), snapshot, at)
            last = page[-1][0]

    def count(self, dataset: str) -> int:
        return int(
            self._run(
                lambda c: c.execute("SELECT COUNT(*) FROM online_features WHERE dataset = ?", (dataset,)).fetchone()[0]
            )
        )

    def materializations(self, dataset: str) -> list[dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            query = "SELECT snapshot, rows, changed, at FROM materializations WHERE dataset = ? ORDER BY id"
            return [dict(r) for r in connection.execute(query, (dataset,))]

        return self._run(read)

    def close(self) -> None:
        return None
