"""The prediction log: every prediction (input, output, model run id, UTC time, source, request id), stored.

The store is chosen by URI (setting PREDICTION_LOG_URI): `sqlite:///path` (the native default) or
`mongodb://...` (compose). Writes never sit on the request path: `submit()` only enqueues, and one background
writer per process takes entries from the queue and writes them in batches. When the store is down, batches are
spooled to JSON-lines files under `<state_dir>/spool/prediction-log/` and replayed in order once it is back
(spooled files of a dead process are replayed too). Every entry carries a unique `prediction_id`, and both
stores ignore an id they already hold, so a replay after a half-finished write never duplicates. Nothing
accepted is lost: `close()` leaves whatever could not be written in the spool for the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mlops import json_text
from mlops.settings import Settings

log = logging.getLogger(__name__)

SOURCES = ("http", "kinesis", "batch", "shadow")  # shadow: a second model's score of a live record, never answered
PREDICTIONS = "predictions"
SUMMARIES = "report_summaries"


class StoreUnavailable(RuntimeError):
    """The prediction store cannot be written or read right now; the message names the setting."""


# --------------------------------------------------------------------------------------------- entries
def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (every timestamp we write is UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _as_utc(moment).isoformat(timespec="microseconds")


_SUB_MS = 4096  # rand_a holds the sub-millisecond fraction in 12 bits (RFC 9562, 6.2 method 3): ids sort by time


def new_id() -> str:
    """A time-ordered 128-bit id in the hex format of a version 7 UUID (RFC 9562): 48 bits of Unix milliseconds,
    12 bits of the sub-millisecond fraction, 62 random bits from Python's generator.

    Why time-ordered: ids are the prediction log's primary key and the request id it indexes. Random (version 4)
    ids land anywhere in those B-trees, so every insert touched pages all over the index: at 30,000 logged rows a
    row cost 34 us against 12 us for ids that arrive in order (measured on SQLite), and it grows with the log.
    Why not `uuid.uuid4()`/`uuid7()`: the first reads the kernel's random source on every call (a system call per
    prediction that also gives up the GIL under load), the second is not in Python 3.11. Python reseeds its
    generator in every forked worker, so ids stay unique across workers."""
    now = time.time_ns()
    millis, rest = divmod(now, 1_000_000)
    high = (millis << 16) | 0x7000 | (rest * _SUB_MS // 1_000_000)  # unix_ts_ms | version 7 | sub-ms fraction
    return f"{(high << 64) | 0x8000_0000_0000_0000 | random.getrandbits(62):032x}"  # variant 10, rand_b


def make_entry(
    features: Mapping[str, Any],
    prediction: float,
    model_run_id: str,
    source: str,
    request_id: str,
    timestamp: datetime | str | None = None,
    customer_id: str | None = None,
) -> dict[str, Any]:
    """One log entry; JSON-ready (the timestamp is an ISO 8601 UTC string with microseconds, so it sorts).

    `customer_id` (the spec's id column, when the record carried it) is what an outcome by customer joins on.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    stamp = _iso(timestamp) if isinstance(timestamp, datetime) else timestamp or utc_now_iso()
    return {
        "prediction_id": new_id(),
        "request_id": request_id,
        "customer_id": customer_id,
        "timestamp": stamp,
        "source": source,
        "model_run_id": model_run_id,
        "input": dict(features),
        "prediction": float(prediction),
    }


# ---------------------------------------------------------------------------------------------- stores
class PredictionStore(Protocol):
    """A backend. `write_many` must be idempotent per `prediction_id` and raise StoreUnavailable when down."""

    uri: str

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None: ...

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]: ...

    def count(self) -> int: ...

    def write_summary(self, summary: Mapping[str, Any]) -> None: ...

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _down(uri: str, error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"prediction store unavailable at PREDICTION_LOG_URI={_redact(uri)} ({type(error).__name__}: {error})"
    )


def _redact(uri: str) -> str:
    """Hide a password in a mongodb://user:password@host URI before it reaches a log."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return uri


class SQLiteStore:
    """SQLite file (WAL, so readers do not block the writer); one short connection per operation.

    A connection per call keeps the store usable from any thread and lets an outage (a locked or unwritable
    file) show up as an error on the call that hit it, nothing cached in a broken state.
    """

    def __init__(self, uri: str, busy_timeout_s: float = 2.0) -> None:
        if not uri.startswith("sqlite:///"):
            raise ValueError(f"not a sqlite URI: {uri!r} (expected sqlite:///path)")
        self.uri = uri
        self.path = Path(uri.removeprefix("sqlite:///"))
        self.busy_timeout_s = busy_timeout_s
        self._schema_ready = False
        self._write_connection: sqlite3.Connection | None = None
        self._writer_lock = threading.Lock()

    def _connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=check_same_thread
        )
        if not self._schema_ready:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
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
                _add_customer_id(connection)
            except sqlite3.Error:
                connection.close()
                raise
            self._schema_ready = True
        return connection

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            connection = self._connect()
        except (sqlite3.Error, OSError) as error:
            raise _down(self.uri, error) from error
        try:
            return action(connection)
        except sqlite3.Error as error:
            raise _down(self.uri, error) from error
        finally:
            connection.close()

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

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(f"INSERT OR IGNORE INTO {PREDICTIONS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        with self._writer_lock:  # the writer's own connection, kept open (see _writer)
            try:
                write(self._writer())
            except (sqlite3.Error, OSError) as error:
                self._drop_writer()  # an outage: the next write opens afresh, like every other call
                raise _down(self.uri, error) from error

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]:
        query = f"SELECT * FROM {PREDICTIONS} WHERE timestamp >= ?"
        params: list[Any] = [_iso(since)]
        if until is not None:
            query += " AND timestamp < ?"
            params.append(_iso(until))
        query += " ORDER BY timestamp DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))

        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            return [
                {
                    **dict(row),
                    "timestamp": datetime.fromisoformat(row["timestamp"]),
                    "input": json.loads(row["input"]),
                }
                for row in connection.execute(query, params)
            ]

        return list(reversed(self._run(read)))

    def count(self) -> int:
        return int(self._run(lambda c: c.execute(f"SELECT COUNT(*) FROM {PREDICTIONS}").fetchone()[0]))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        text = json.dumps(dict(summary), default=str)
        self._run(
            lambda c: c.execute(f"INSERT INTO {SUMMARIES} (created_at, summary) VALUES (?, ?)", (utc_now_iso(), text))
        )

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"SELECT created_at, summary FROM {SUMMARIES} ORDER BY id DESC"
        rows = self._run(lambda c: c.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall())
        return [{"created_at": datetime.fromisoformat(t), **json.loads(s)} for t, s in reversed(rows)]

    def _writer(self) -> sqlite3.Connection:
        """One connection kept for writes. Why not one per write like the other calls: closing the last
        connection of a WAL database checkpoints it (writes and syncs the database file), and Python holds the GIL
        through that close, so each batch stalled every request thread of the worker (16% of a core idle at
        saturation)."""
        if self._write_connection is None:
            self._write_connection = self._connect(check_same_thread=False)
        return self._write_connection

    def _drop_writer(self) -> None:
        if self._write_connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._write_connection.close()
            self._write_connection = None

    def close(self) -> None:
        with self._writer_lock:
            self._drop_writer()


def _add_customer_id(connection: sqlite3.Connection) -> None:
    """Logs written before outcomes existed lack the column outcomes join on: add it (old rows stay NULL)."""
    columns = {row[1] for row in connection.execute(f"PRAGMA table_info({PREDICTIONS})")}
    if "customer_id" not in columns:
        connection.execute(f"ALTER TABLE {PREDICTIONS} ADD COLUMN customer_id TEXT")
    connection.executescript(
        f"""
        CREATE INDEX IF NOT EXISTS {PREDICTIONS}_request ON {PREDICTIONS} (request_id);
        CREATE INDEX IF NOT EXISTS {PREDICTIONS}_customer ON {PREDICTIONS} (customer_id, timestamp);
        """
    )


class MongoStore:
    """MongoDB through pymongo: collections `predictions` (`_id` = prediction_id) and `report_summaries`."""

    def __init__(
        self,
        uri: str,
        client_factory: Callable[..., Any] | None = None,
        timeout_ms: int = 2000,
        database: str | None = None,
    ) -> None:
        import pymongo
        from pymongo.uri_parser import parse_uri

        self.uri = uri
        self._errors = (pymongo.errors.PyMongoError,)
        factory = client_factory or pymongo.MongoClient
        self._client = factory(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
        self._db = self._client[database or parse_uri(uri).get("database") or "mlops"]
        self._indexed = False

    def _collection(self) -> Any:
        collection = self._db[PREDICTIONS]
        if not self._indexed:
            collection.create_index("timestamp")
            collection.create_index("request_id")
            collection.create_index([("customer_id", 1), ("timestamp", -1)])
            self._indexed = True
        return collection

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        documents = [
            {
                "_id": e["prediction_id"],
                **{k: v for k, v in e.items() if k != "timestamp"},
                "timestamp": datetime.fromisoformat(e["timestamp"]),
            }
            for e in entries
        ]
        if not documents:
            return
        try:
            self._collection().insert_many(documents, ordered=False)
        except BulkWriteError as error:
            # already written by an earlier, half-finished attempt: fine; anything else is a real failure
            others = [w for w in error.details.get("writeErrors", []) if w.get("code") != 11000]
            if others or error.details.get("writeConcernErrors"):
                raise _down(self.uri, error) from error
        except self._errors as error:
            raise _down(self.uri, error) from error

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]:
        window: dict[str, Any] = {"$gte": _as_utc(since)}
        if until is not None:
            window["$lt"] = _as_utc(until)
        try:
            cursor = (
                self._db[PREDICTIONS].find({"timestamp": window}, {"_id": 0}).sort([("timestamp", -1), ("_id", -1)])
            )
            if limit is not None:
                cursor = cursor.limit(int(limit))
            found = list(cursor)
        except self._errors as error:
            raise _down(self.uri, error) from error
        for document in found:
            document["timestamp"] = _as_utc(document["timestamp"])
        return list(reversed(found))

    def count(self) -> int:
        try:
            return int(self._db[PREDICTIONS].count_documents({}))
        except self._errors as error:
            raise _down(self.uri, error) from error

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        try:
            self._db[SUMMARIES].insert_one({**dict(summary), "created_at": datetime.now(UTC)})
        except self._errors as error:
            raise _down(self.uri, error) from error

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            cursor = self._db[SUMMARIES].find({}, {"_id": 0}).sort([("created_at", -1), ("_id", -1)])
            found = list(cursor.limit(int(limit)) if limit else cursor)
        except self._errors as error:
            raise _down(self.uri, error) from error
        return list(reversed(found))

    def close(self) -> None:
        self._client.close()


def open_store(uri: str, **options: Any) -> PredictionStore:
    """The backend for a URI: sqlite:///path or mongodb://... / mongodb+srv://..."""
    if uri.startswith("sqlite:///"):
        return SQLiteStore(uri, **options)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoStore(uri, **options)
    raise ValueError(f"PREDICTION_LOG_URI={uri!r}: expected sqlite:///path or mongodb://host:port/database")


# ----------------------------------------------------------------------------------------------- spool
class Spool:
    """Batches the store refused, as JSON-lines files whose names sort in write order.

    A file being replayed is renamed `<name>.replaying-<pid>` first, so two processes never replay the same
    file; a claim left behind by a dead process is released on start.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = 0
        self._release_dead_claims()

    def _release_dead_claims(self) -> None:
        for claimed in self.directory.glob("*.jsonl.replaying-*"):
            pid = int(claimed.name.rsplit("-", 1)[1]) if claimed.name.rsplit("-", 1)[1].isdigit() else 0
            if pid == os.getpid() or not _alive(pid):
                claimed.rename(claimed.with_name(claimed.name.split(".replaying-")[0]))

    def append(self, entries: Sequence[Mapping[str, Any]]) -> Path:
        self._counter += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._counter:08d}.jsonl"
        temporary = self.directory / f".{name}.tmp"
        with temporary.open("w") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        target = self.directory / name
        temporary.replace(target)
        return target

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    def pending_entries(self) -> int:
        return sum(sum(1 for _ in p.open()) for p in self.pending())

    def replay(self, write: Callable[[list[dict[str, Any]]], None]) -> int:
        """Write every spooled file, oldest first; stop at the first failure (raised). Returns the count."""
        written = 0
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.replaying-{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another process took it
            try:
                entries = [json.loads(line) for line in claimed.read_text().splitlines() if line.strip()]
                write(entries)
            except BaseException:
                claimed.rename(path)
                raise
            claimed.unlink()
            written += len(entries)
        return written


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------- the log
class PredictionLog:
    """Accepts entries without blocking and writes them from one background thread, in batches, in order."""

    def __init__(
        self,
        store: PredictionStore,
        spool_dir: Path,
        batch_size: int = 500,
        retry_interval_s: float = 1.0,
        linger_s: float = 0.05,
    ) -> None:
        self.store = store
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        # after the first entry of a batch, wait this long for more: under load one transaction (one fsync, one
        # connection) per many predictions instead of one per request, which cost a third of a core at 900 req/s
        self.linger_s = linger_s
        self._hurry = threading.Event()
        self.retry_interval_s = retry_interval_s
        self._queue: queue.SimpleQueue[list[dict[str, Any]] | None] = queue.SimpleQueue()
        self._state = threading.Condition()
        self.accepted = 0  # entries submitted
        self.handled = 0  # entries written or spooled
        self.written = 0  # entries in the store (including replayed ones)
        self.spooled = 0  # entries that went to the spool
        self._outage = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- writing
    def submit(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Enqueue entries (see `make_entry`); returns at once. Nothing is dropped.

        One queue item per call, not per entry: each put and get takes the GIL from the request threads."""
        if self._stopping:
            raise RuntimeError("prediction log is closed")
        batch = [dict(entry) for entry in entries]
        if not batch:
            return
        with self._state:
            self.accepted += len(batch)
        self._queue.put(batch)

    def _take_batch(self, wait_s: float) -> list[dict[str, Any]]:
        try:
            first = self._queue.get(timeout=wait_s)
        except queue.Empty:
            return []
        if first is None:  # close() woke us: write what is there without lingering
            return self._drain([])
        if self.linger_s > 0 and not self._stopping:
            # sleep, not get(timeout): a get would wake this thread on every call, and each wake-up takes the GIL
            # from a request thread; one wake-up per linger instead (cut short by flush, wait_durable and close)
            self._hurry.wait(self.linger_s)
            self._hurry.clear()
        return self._drain(first)

    def _drain(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`batch` and what is queued behind it, up to about `batch_size` entries (one call's entries stay
        together)."""
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.extend(item)
        return batch

    def _run(self) -> None:
        last_retry = 0.0
        while True:
            has_spool = bool(self.spool.pending())
            batch = self._take_batch(self.retry_interval_s if has_spool else 0.5)
            if has_spool and time.monotonic() - last_retry >= self.retry_interval_s:
                last_retry = time.monotonic()
                self._replay()
            if batch:
                self._write(batch)
            with self._state:
                self._state.notify_all()
                if self._stopping and self.handled >= self.accepted and self._queue.empty():
                    return

    def _replay(self) -> None:
        def write(entries: list[dict[str, Any]]) -> None:
            self.store.write_many(entries)
            with self._state:
                self.written += len(entries)

        try:
            replayed = self.spool.replay(write)
        except StoreUnavailable:
            return
        except Exception:  # a corrupt spool file or a bug: keep serving, keep the file
            log.exception("replaying the prediction spool in %s failed", self.spool.directory)
            return
        if replayed:
            log.info("prediction store back: replayed %d spooled prediction(s)", replayed)
        if not self.spool.pending():
            self._outage = False

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not self.spool.pending():  # keep order: nothing may overtake spooled entries
            try:
                self.store.write_many(batch)
            except StoreUnavailable as error:
                if not self._outage:
                    log.warning("%s; spooling predictions to %s until it is back", error, self.spool.directory)
                self._outage = True
            except Exception:
                log.exception("writing %d prediction(s) failed; spooling them", len(batch))
            else:
                with self._state:
                    self.written += len(batch)
                    self.handled += len(batch)
                return
        try:
            self.spool.append(batch)
        except OSError:
            log.exception("cannot spool %d prediction(s) to %s; retrying", len(batch), self.spool.directory)
            time.sleep(self.retry_interval_s)
            self._queue.put(batch)  # back in the queue (at the end): never dropped
            return
        with self._state:
            self.spooled += len(batch)
            self.handled += len(batch)

    # ---------------------------------------------------------------- draining
    def wait_durable(self, timeout: float = 10.0) -> bool:
        """Wait until every entry accepted so far is on disk: written to the store, or spooled when it is down.

        Cheaper than `flush` during an outage (no replay wait): what a checkpoint needs before it moves on.
        """
        deadline = time.monotonic() + timeout
        self._hurry.set()
        with self._state:
            target = self.accepted
            while self.handled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._state.wait(timeout=min(0.1, remaining))
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every entry accepted so far is in the store (spool replayed). False on timeout."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        with self._state:
            target = self.accepted
        while True:
            with self._state:
                handled = self.handled >= target
            if handled and not self.spool.pending():
                return True
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            with self._state:
                self._state.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, drain the queue into the store (or the spool) and stop the writer.

        Returns True when everything is in the store; False leaves the rest in the spool for the next start.
        """
        stored = self.flush(timeout)
        self._stopping = True
        self._hurry.set()
        self._queue.put(None)  # wake the writer
        self._thread.join(timeout=max(1.0, timeout))
        self.store.close()
        return stored

    # ---------------------------------------------------------------- reading (for reports)
    def read_predictions(
        self, since: datetime, until: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Entries with since <= timestamp < until, oldest first; with `limit`, the newest `limit` of them.

        Each: prediction_id, request_id, timestamp (aware UTC datetime), source, model_run_id, input (dict of
        features), prediction (float).
        """
        return self.store.read(since, until, limit)

    def count(self) -> int:
        return self.store.count()

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Store one report summary (collection/table `report_summaries`), stamped with its UTC time."""
        self.store.write_summary(summary)

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self.store.read_summaries(limit)


def spool_dir_for(settings: Settings) -> Path:
    return settings.state_dir / "spool" / "prediction-log"


def open_prediction_log(settings: Settings, **options: Any) -> PredictionLog:
    """The prediction log of these settings: PREDICTION_LOG_URI (default: SQLite under STATE_DIR)."""
    return PredictionLog(open_store(settings.prediction_log_location), spool_dir_for(settings), **options)
