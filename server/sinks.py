"""Where predictions go after they are answered: the prediction log and the drift service.

Entry points (HTTP, Kinesis, batch) hand every scored batch to a list of sinks; a sink's `submit()` only enqueues,
so a slow or dead dependency never costs the request anything. Entries are the prediction log's format
(`mlops.stores.prediction_log.make_entry`): prediction_id, request_id, timestamp, source, model_run_id, input,
prediction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

import requests

from mlops.control_plane import service_headers
from mlops.settings import Settings
from mlops.stores.prediction_log import PredictionLog
from mlops.supervision import Supervised

log = logging.getLogger(__name__)


class PredictionSink(Protocol):
    """Takes scored entries off the request path. `submit` must not block; `close` drains what it can."""

    def submit(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


@lru_cache(maxsize=1)
def _metrics() -> Any:
    """Created on first use, not at import: the multiprocess directory must be set before prometheus_client loads."""
    from prometheus_client import Counter

    class Metrics:
        dropped = Counter(
            "drift_sink_dropped_records_total",
            "Prediction records not delivered to the drift service, by reason",
            ["reason"],
        )
        sent = Counter("drift_sink_sent_records_total", "Prediction records delivered to the drift service")

    return Metrics


class PredictionLogSink:
    """Every prediction into the prediction log (its own background writer batches and spools).

    Its writer's state (queue depth, spool, quarantine, errors, restarts) is published as Prometheus gauges from
    the writer's own loop, once a second, so every process's figures are current whichever one is scraped."""

    def __init__(self, prediction_log: PredictionLog, metrics_registry: Any = None) -> None:
        self.prediction_log = prediction_log
        self._gauges = log_metrics(metrics_registry)
        self._published = 0.0
        prediction_log.on_loop = self._publish

    def _publish(self) -> None:
        now = time.monotonic()
        if now - self._published < 1.0:
            return
        self._published = now
        stats = self.prediction_log.stats()
        gauges = self._gauges
        gauges["queue"].set(stats["queue_depth"])
        gauges["spool"].set(stats["spool_files"])
        gauges["quarantined"].set(stats["quarantined"])
        gauges["dropped"].set(stats["quarantine_dropped"])
        gauges["errors"].set(stats["write_errors"])
        gauges["restarts"].set(stats["restarts"])
        gauges["outage"].set(stats["outage_seconds"])

    def submit(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.prediction_log.submit(records)

    def wait_durable(self, timeout: float = 10.0) -> bool:
        """Block until what was submitted is written or spooled (the Kinesis consumer calls it before a checkpoint)."""
        return self.prediction_log.wait_durable(timeout)

    def problems(self) -> list[str]:
        return self.prediction_log.problems()

    def close(self, timeout: float = 5.0) -> None:
        self.prediction_log.close(timeout)


_LOG_GAUGES: dict[int, dict[str, Any]] = {}


def log_metrics(registry: Any = None) -> dict[str, Any]:
    """The prediction log's gauges, once per registry (None: the default, multiprocess-aware in the API)."""
    key = id(registry)
    if key not in _LOG_GAUGES:
        from prometheus_client import REGISTRY, Gauge

        where = registry or REGISTRY

        def gauge(name: str, text: str, mode: str) -> Any:
            return Gauge(name, text, registry=where, multiprocess_mode=mode)

        _LOG_GAUGES[key] = {
            "queue": gauge("prediction_log_queue_depth", "Entries accepted, not yet written or spooled", "livesum"),
            "spool": gauge("prediction_log_spool_files", "Batch files waiting in the spool (store down)", "livemax"),
            "quarantined": gauge(
                "prediction_log_quarantined_entries", "Entries the store refused for their content", "livemax"
            ),
            "dropped": gauge(
                "prediction_log_quarantine_dropped_entries",
                "Refused entries dropped because the quarantine was full (QUARANTINE_MAX_BYTES)",
                "livemax",
            ),
            "errors": gauge("prediction_log_write_errors", "Writes the store failed, since start", "livesum"),
            "restarts": gauge("prediction_log_writer_restarts", "Restarts of the writer thread", "livesum"),
            "outage": gauge("prediction_log_outage_seconds", "How long the store has been unavailable", "livemax"),
        }
    return _LOG_GAUGES[key]


def sink_problems(sinks: Sequence[Any]) -> list[str]:
    """What the sinks say is wrong with them (for /health)."""
    found: list[str] = []
    for sink in sinks:
        problems = getattr(sink, "problems", None)
        if problems is not None:
            found += problems()
    return found


def drift_payload(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The drift service's contract: the feature fields plus prediction, model_run_id, request_id, timestamp."""
    return {
        **entry["input"],
        "prediction": float(entry["prediction"]),
        "model_run_id": entry["model_run_id"],
        "request_id": entry["request_id"],
        "timestamp": entry["timestamp"],
    }


class DriftSink:
    """POSTs batches to `<DRIFT_SERVICE_URL>/iterate/<dataset>` from a background thread, with a short timeout.

    Drift monitoring is best effort: when the queue is full or the service does not answer, the batch is dropped
    and counted (`drift_sink_dropped_records_total`), and the failure is logged once per outage.
    """

    def __init__(
        self,
        base_url: str,
        dataset: str | Callable[[], str],
        batch_size: int = 200,
        flush_interval_s: float = 1.0,
        timeout_s: float = 0.5,
        max_queue: int = 10_000,
        session: requests.Session | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._dataset = dataset
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.timeout_s = timeout_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._session = session or requests.Session()
        self._headers = dict(headers or {})  # the drift service's key (DRIFT_SERVICE_KEY), when it has one
        self._failing = False
        self._stopping = False
        self.sent = 0
        self.dropped = 0
        self._idle = threading.Event()
        self._idle.set()
        self._failing_since: float | None = None
        self._thread = Supervised("drift-sink", self._run)
        self._thread.start()

    @property
    def dataset(self) -> str:
        return self._dataset() if callable(self._dataset) else self._dataset

    def submit(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._stopping:
            return
        for entry in records:
            try:
                self._queue.put_nowait(drift_payload(entry))
            except queue.Full:
                self._drop(1, "queue_full")
            else:
                self._idle.clear()

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        _metrics().dropped.labels(reason=reason).inc(count)

    def _run(self) -> None:
        while True:
            self._thread.beat()
            batch: list[dict[str, Any]] = []
            deadline = time.monotonic() + self.flush_interval_s
            stop = False
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if batch:
                self._post(batch)
            if self._queue.empty():
                self._idle.set()
            if stop:
                return

    def _post(self, batch: list[dict[str, Any]]) -> None:
        url = f"{self.base_url}/iterate/{self.dataset}"
        try:
            response = self._session.post(url, json=batch, headers=self._headers, timeout=self.timeout_s)
            response.raise_for_status()
        except (requests.RequestException, ValueError) as error:
            self._drop(len(batch), "unreachable" if not isinstance(error, requests.HTTPError) else "rejected")
            if not self._failing:
                log.warning(
                    "drift service at DRIFT_SERVICE_URL=%s did not take %d record(s) (%s: %s); dropping drift "
                    "batches until it answers (predictions are not affected)",
                    self.base_url,
                    len(batch),
                    type(error).__name__,
                    error,
                )
            if not self._failing:
                self._failing_since = time.time()
            self._failing = True
            return
        self._failing_since = None
        if self._failing:
            log.info("drift service at DRIFT_SERVICE_URL=%s answers again", self.base_url)
        self._failing = False
        self.sent += len(batch)
        _metrics().sent.inc(len(batch))

    def problems(self) -> list[str]:
        found = [p for p in [self._thread.problem(max_silence_s=60.0)] if p]
        if self._failing_since is not None:
            found.append(
                f"drift service at DRIFT_SERVICE_URL={self.base_url} not taking records for "
                f"{time.time() - self._failing_since:.0f} s ({self.dropped} dropped so far)"
            )
        return found

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (sent or dropped); for tests and shutdown."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._stopping = True
        self._thread.stop()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(timeout)


def submit_all(sinks: Sequence[PredictionSink], records: Sequence[Mapping[str, Any]]) -> None:
    """Hand records to every sink; a failing sink is logged, never raised into the caller's request."""
    for sink in sinks:
        try:
            sink.submit(records)
        except Exception:
            log.exception("prediction sink %s failed; the prediction itself was answered", type(sink).__name__)


def close_all(sinks: Sequence[PredictionSink], timeout: float = 5.0) -> None:
    for sink in sinks:
        try:
            sink.close(timeout)
        except Exception:
            log.exception("closing prediction sink %s failed", type(sink).__name__)


def build_sinks(
    settings: Settings, dataset: str | Callable[[], str], metrics_registry: Any = None
) -> list[PredictionSink]:
    """The sinks of these settings, for every surface: the prediction log (PREDICTION_LOG_URI) always, the drift
    service when DRIFT_SERVICE_URL is set. `dataset` (the spec's name, or how to get it once a model is loaded)
    picks the drift service's data set."""
    from mlops.stores.prediction_log import open_prediction_log

    built: list[PredictionSink] = [PredictionLogSink(open_prediction_log(settings), metrics_registry)]
    if settings.drift_service_url:
        built.append(DriftSink(settings.drift_service_url, dataset, headers=service_headers(settings)))
    return built


def log_sinks(sinks: Sequence[PredictionSink]) -> list[PredictionSink]:
    """The sinks a shadow model's scores go to: not the drift service, which watches what clients get."""
    return [sink for sink in sinks if not isinstance(sink, DriftSink)]
