"""The prediction log as callers use it: `submit()` only enqueues; one background writer per process writes batches.

A batch the store refuses for its content (not an outage) is bisected to the entries at fault, which are quarantined
(mlops.stores.quarantine) while the rest is written: one odd entry never blocks the others, nor the spool.

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
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops.settings import Settings
from mlops.stores.prediction_log.entry import PredictionStore
from mlops.stores.prediction_log.spool import Spool
from mlops.stores.quarantine import Quarantine, keep_refused, quarantine_dir, write_isolating
from mlops.supervision import Supervised

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
        quarantine: Quarantine | None = None,
        behind_entries: int = 50_000,
    ) -> None:
        self.store = store
        self.spool = Spool(spool_dir)
        self.quarantine = quarantine or Quarantine(spool_dir.with_name(f"{spool_dir.name}-quarantine"))
        self.batch_size = batch_size
        # after the first entry of a batch, wait this long for more: under load one transaction (one fsync, one
        # connection) per many predictions instead of one per request, which cost a third of a core at 900 req/s
        self.linger_s = linger_s
        self.behind_entries = behind_entries  # more than this queued: /health says the writer is falling behind
        self._hurry = threading.Event()
        self.retry_interval_s = retry_interval_s
        self._queue: queue.SimpleQueue[list[dict[str, Any]] | None] = queue.SimpleQueue()
        self._state = threading.Condition()
        self.accepted = 0  # entries submitted
        self.handled = 0  # entries written, spooled or quarantined
        self.written = 0  # entries in the store (including replayed ones)
        self.spooled = 0  # entries that went to the spool
        self.quarantined = 0  # entries this process set apart for their content
        self.write_errors = 0  # writes the store failed (an outage or refused content)
        self.outage_since: float | None = None  # time.time() of the first failed write of the current outage
        self._outage = False
        self._stopping = False
        self.on_loop: Callable[[], None] | None = None  # called by the writer each time round (the sink's metrics)
        self._thread = Supervised("prediction-log-writer", self._run)
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
            self._thread.beat()
            if self.on_loop is not None:
                try:
                    self.on_loop()
                except Exception:
                    log.exception("prediction log: the on_loop hook failed")
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

    def _isolate(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write `batch`; quarantine what the store refuses for its content. Returns what the store being down left
        unwritten (raises nothing but what a bug raises)."""
        refused, unwritten = write_isolating(self.store.write_many, batch)
        if refused:
            keep_refused(self.quarantine, refused, log, "prediction(s)")
        with self._state:
            self.written += len(batch) - len(refused) - len(unwritten)
            self.quarantined += len(refused)
            self.write_errors += bool(refused) + bool(unwritten)
        return unwritten

    def _replay(self) -> None:
        try:
            replayed = self.spool.replay(self._isolate)
        except Exception:  # a corrupt spool file or a bug: keep serving, keep the file
            log.exception("replaying the prediction spool in %s failed", self.spool.directory)
            return
        if replayed:
            log.info("prediction store back: replayed %d spooled prediction(s)", replayed)
        if not self.spool.pending():
            self._outage = False
            self.outage_since = None

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if not self.spool.pending():  # keep order: nothing may overtake spooled entries
            try:
                unwritten = self._isolate(batch)
            except Exception:  # a bug (the store's own errors are handled in _isolate): spool, never drop
                log.exception("writing %d prediction(s) failed; spooling them", len(batch))
                unwritten = batch
            if not unwritten:
                with self._state:
                    self.handled += len(batch)
                return
            if not self._outage:
                log.warning(
                    "prediction store unavailable (PREDICTION_LOG_URI); spooling predictions to %s until it is back",
                    self.spool.directory,
                )
                self.outage_since = time.time()
            self._outage = True
            with self._state:
                self.handled += len(batch) - len(unwritten)
            batch = unwritten
        try:
            self.spool.append(batch)
        except OSError:
            log.exception("cannot spool %d prediction(s) to %s; retrying", len(batch), self.spool.directory)
            time.sleep(self.retry_interval_s)
            self._queue.put(batch)  # back in the queue (at the end): never dropped
            with self._state:
                self.write_errors += 1
            return
        with self._state:
            self.spooled += len(batch)
            self.handled += len(batch)

    # ---------------------------------------------------------------- health
    def stats(self) -> dict[str, Any]:
        """What /health and the metrics say about the log: queue depth, spool, quarantine, errors, restarts."""
        with self._state:
            depth = self.accepted - self.handled
        return {
            "queue_depth": depth,
            "spool_files": len(self.spool.pending()),
            "quarantined": self.quarantine.count(),
            "quarantine_dropped": self.quarantine.dropped(),
            "written": self.written,
            "write_errors": self.write_errors,
            "restarts": self._thread.restarts,
            "outage_seconds": 0.0 if self.outage_since is None else time.time() - self.outage_since,
        }

    def problems(self) -> list[str]:
        """Why the log is not well (empty when it is): its writer dead, its store down, or far behind."""
        found = []
        problem = self._thread.problem(max_silence_s=60.0)
        if problem:
            found.append(problem)
        files = len(self.spool.pending())
        if files:
            found.append(
                f"prediction log store unavailable (PREDICTION_LOG_URI): {files} batch file(s) spooled in "
                f"{self.spool.directory}, replayed when it is back"
            )
        dropped = self.quarantine.dropped()
        if dropped:
            found.append(
                f"prediction log quarantine {self.quarantine.directory} is full (QUARANTINE_MAX_BYTES): {dropped} "
                "refused entries dropped; inspect, replay or clear it with `make quarantine`"
            )
        with self._state:
            depth = self.accepted - self.handled
        if depth > self.behind_entries:
            found.append(f"prediction log writer is behind: {depth} entries queued")
        return found

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
            if handled and self.spool.empty():
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
    quarantine = Quarantine(quarantine_dir(settings.state_dir, "prediction-log"), settings.quarantine_max_bytes)
    return PredictionLog(
        open_store(settings.prediction_log_location), spool_dir_for(settings), quarantine=quarantine, **options
    )
