"""The online store: the latest feature row of every customer, for scoring by id.

Filled from the S3 feature store (the offline store) by `make materialize` (mlops/materialize.py); read by the API
(`GET /customers/<id>/churn`), the Kinesis consumer (id-only envelopes) and the batch (every customer). One row per
(data set, customer id): the clean feature values as the contract returns them, and the snapshot (data hash) they
came from. Writes are upserts, so materializing the same snapshot twice changes nothing; every materialization is
recorded (data set, snapshot, rows, time).

ONLINE_STORE_URI picks the backend: `sqlite:///path` (default: STATE_DIR/online.sqlite) or `redis://host:port/db`
(Debian's redis-server natively, the redis service in compose). A store that cannot be reached raises
OnlineStoreUnavailable, whose message names the setting.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlops.prediction_log import _redact, utc_now_iso
from mlops.settings import Settings

SCAN_BATCH = 1000


class OnlineStoreUnavailable(RuntimeError):
    """The online store cannot be read or written; the message names ONLINE_STORE_URI."""


@dataclass(frozen=True)
class OnlineRow:
    customer_id: str
    features: dict[str, Any]
    snapshot: str  # data hash of the feature-store snapshot the row came from
    materialized_at: str


def _down(uri: str, error: BaseException) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(
        f"online store unavailable at ONLINE_STORE_URI={_redact(uri)} ({type(error).__name__}: {error})"
    )


class OnlineStore(Protocol):
    uri: str

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int: ...

    def get(self, dataset: str, customer_id: str) -> OnlineRow | None: ...

    def scan(self, dataset: str) -> Iterator[OnlineRow]: ...

    def count(self, dataset: str) -> int: ...

    def materializations(self, dataset: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _dumps(features: Mapping[str, Any]) -> str:
    return json.dumps(dict(features), separators=(",", ":"), allow_nan=False)


# ---------------------------------------------------------------------------------------------------- SQLite
class SQLiteOnlineStore:
    """One table keyed by (dataset, customer_id); a connection per call (any thread, outages surface per call)."""

    def __init__(self, uri: str, busy_timeout_s: float = 2.0) -> None:
        if not uri.startswith("sqlite:///"):
            raise ValueError(f"not a sqlite URI: {uri!r}")
        self.uri = uri
        self.path = Path(uri.removeprefix("sqlite:///"))
        self.busy_timeout_s = busy_timeout_s
        self._ready = False
        self._local = threading.local()

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except (sqlite3.Error, OSError) as error:
            raise _down(self.uri, error) from error
        try:
            if not self._ready:
                connection.execute("PRAGMA journal_mode=WAL")
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
                self._ready = True
            return action(connection)
        except sqlite3.Error as error:
            raise _down(self.uri, error) from error
        finally:
            connection.close()

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int:
        now = utc_now_iso()
        payload = [(dataset, customer, snapshot, _dumps(features), now) for customer, features in rows]

        def write(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            try:
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
                connection.execute("COMMIT")
                return changed
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        return int(self._run(write))

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
            raise _down(self.uri, error) from error
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


# ----------------------------------------------------------------------------------------------------- Redis
class RedisOnlineStore:
    """A hash per customer (`online:<dataset>:<id>`: snapshot, features, materialized_at), a set of the ids, and a
    list of materializations. Short timeouts: a dead Redis is a quick, named error, not a hung request."""

    def __init__(self, uri: str, timeout_s: float = 1.0) -> None:
        import redis

        self.uri = uri
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            uri, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
        )

    @staticmethod
    def _key(dataset: str, customer_id: str) -> str:
        return f"online:{dataset}:{customer_id}"

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except self._errors as error:
            raise _down(self.uri, error) from error

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int:
        now = utc_now_iso()
        items = [(customer, _dumps(features)) for customer, features in rows]

        def write() -> int:
            changed = 0
            for start in range(0, len(items), SCAN_BATCH):
                chunk = items[start : start + SCAN_BATCH]
                reader = self._client.pipeline(transaction=False)
                for customer, _ in chunk:
                    reader.hmget(self._key(dataset, customer), "snapshot", "features")
                current = reader.execute()
                writer = self._client.pipeline(transaction=True)
                for (customer, text), (old_snapshot, old_features) in zip(chunk, current, strict=True):
                    if old_snapshot == snapshot and old_features == text:
                        continue
                    changed += 1
                    writer.hset(
                        self._key(dataset, customer),
                        mapping={"snapshot": snapshot, "features": text, "materialized_at": now},
                    )
                writer.sadd(f"online:{dataset}:ids", *[customer for customer, _ in chunk])
                writer.execute()
            record = {"snapshot": snapshot, "rows": len(items), "changed": changed, "at": now}
            self._client.rpush(f"online:{dataset}:materializations", json.dumps(record))
            return changed

        return int(self._guard(write))

    def get(self, dataset: str, customer_id: str) -> OnlineRow | None:
        found = self._guard(lambda: self._client.hgetall(self._key(dataset, customer_id)))
        if not found:
            return None
        return OnlineRow(customer_id, json.loads(found["features"]), found["snapshot"], found["materialized_at"])

    def scan(self, dataset: str) -> Iterator[OnlineRow]:
        ids = sorted(self._guard(lambda: self._client.smembers(f"online:{dataset}:ids")))
        for start in range(0, len(ids), SCAN_BATCH):
            chunk = ids[start : start + SCAN_BATCH]

            def read(chunk: list[str] = chunk) -> list[Any]:
                pipe = self._client.pipeline(transaction=False)
                for customer in chunk:
                    pipe.hgetall(self._key(dataset, customer))
                return pipe.execute()

            for customer, found in zip(chunk, self._guard(read), strict=True):
                if found:
                    yield OnlineRow(
                        customer, json.loads(found["features"]), found["snapshot"], found["materialized_at"]
                    )

    def count(self, dataset: str) -> int:
        return int(self._guard(lambda: self._client.scard(f"online:{dataset}:ids")))

    def materializations(self, dataset: str) -> list[dict[str, Any]]:
        raw = self._guard(lambda: self._client.lrange(f"online:{dataset}:materializations", 0, -1))
        return [json.loads(r) for r in raw]

    def close(self) -> None:
        self._client.close()


def open_online_store(settings: Settings) -> OnlineStore:
    """The online store of these settings (ONLINE_STORE_URI; default SQLite under STATE_DIR)."""
    uri = settings.online_store_location
    if uri.startswith("sqlite:///"):
        return SQLiteOnlineStore(uri)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisOnlineStore(uri)
    raise OnlineStoreUnavailable(f"ONLINE_STORE_URI={uri!r}: expected sqlite:///path or redis://host:port/db")
