"""The prediction log as callers use it: `submit()` only enqueues; one background writer per process writes batches.

When the store is down, batches are spooled to JSON-lines files under `<state_dir>/spool/prediction-log/` and
replayed in order once it is back (spooled files of a dead process are replayed too). Every entry carries a unique
`prediction_id`, and both stores ignore an id they already hold, so a replay after a half-finished write never
duplicates. Nothing accepted is lost: `close()` leaves whatever could not be written in the spool for the next start.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops.settings import Settings
from mlops.stores.base import StoreUnavailable
from mlops.stores.prediction_log.entry import PredictionStore
from mlops.stores.prediction_log.spool import Spool

log = logging.getLogger(__name__)


def open_store(uri: str, **options: Any) -> PredictionStore:
    """The backend for a URI: sqlite:///path or mongodb://... / mongodb+srv://..."""
    if uri.startswith("sqlite:///"):
        from mlops.stores.prediction_log.sqlite import SQLiteStore

        return SQLiteStore(uri, **options)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from mlops.stores.prediction_log.mongo import MongoStore

        return MongoStore(uri, **options)
    raise ValueError(f"PREDICTION_LOG_URI={uri!r}: expected sqlite:///path or mongodb://host:port/database")


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
