"""The drift service's state: a window per data set, the reference per served model, and the background worker.

Requests only append to a window and wake the worker; the worker computes drift at most once per
DRIFT_INTERVAL_SECONDS (debounce: a burst of batches costs one computation), so /iterate stays fast whatever
Evidently costs. The reference is loaded once per (data set, model run id) and reloaded when the run id changes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mlops.settings import Settings
from mlops.spec import FeatureSpec
from mlops.supervision import Supervised
from monitoring.evidently_service.drift import (
    DriftResult,
    Reference,
    SlidingWindow,
    compute_drift,
    mean_prediction,
    prepare_reference,
)
from monitoring.evidently_service.metrics import DriftMetrics
from monitoring.evidently_service.reference import ReferenceLoader

log = logging.getLogger(__name__)

NOT_ENOUGH_DATA = "not enough data"


@dataclass
class DatasetState:
    window: SlidingWindow
    dirty: bool = False
    status: str = NOT_ENOUGH_DATA
    message: str = ""
    result: DriftResult | None = None
    computed_at: float | None = None
    reference: Reference | None = None
    reference_run_id: str | None = None
    reference_loaded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class DriftMonitor:
    def __init__(
        self,
        settings: Settings,
        spec: FeatureSpec,
        loader: ReferenceLoader,
        metrics: DriftMetrics,
        trigger: Any = None,
    ) -> None:
        self.settings = settings
        self.trigger = trigger  # RetrainTrigger: told every drift share
        self.spec = spec
        self.loader = loader
        self.metrics = metrics
        self.datasets: dict[str, DatasetState] = {spec.name: DatasetState(SlidingWindow(settings.drift_window_size))}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Supervised | None = None
        self.metrics.enough_data.labels(spec.name).set(0)
        self.metrics.window_rows.labels(spec.name).set(0)

    # ------------------------------------------------------------------ request path
    def known(self, dataset: str) -> bool:
        return dataset in self.datasets

    def ingest(self, dataset: str, records: list[dict[str, Any]]) -> int:
        """Append validated records; returns the window size. Cheap: no drift maths here."""
        state = self.datasets[dataset]
        state.window.extend(records)
        state.dirty = True
        size = len(state.window)
        self.metrics.received.labels(dataset).inc(len(records))
        self.metrics.window_rows.labels(dataset).set(size)
        if size < self.settings.drift_min_rows:
            state.status = NOT_ENOUGH_DATA
        self._wake.set()
        return size

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min_rows": self.settings.drift_min_rows, "window_size": self.settings.drift_window_size}
        datasets = {}
        for name, state in self.datasets.items():
            size = len(state.window)
            datasets[name] = {
                "status": state.status,
                "message": state.message
                or (
                    f"{size} of {self.settings.drift_min_rows} rows needed"
                    if size < self.settings.drift_min_rows
                    else ""
                ),
                "window_rows": size,
                "received": state.window.received,
                "reference": state.reference.source if state.reference else None,
                "reference_run_id": state.reference_run_id,
                "computed_at": state.computed_at,
                "drift": state.result.as_dict() if state.result else None,
            }
        out["datasets"] = datasets
        return out

    # ------------------------------------------------------------------ worker
    def compute(self, dataset: str) -> str:
        """One computation for `dataset` (called by the worker, or directly by tests); returns the new status."""
        state = self.datasets[dataset]
        with state.lock:
            state.dirty = False
            records = state.window.snapshot()
            prediction = mean_prediction(records)
            if prediction is not None:
                self.metrics.prediction_mean.labels(dataset).set(prediction)
            if len(records) < self.settings.drift_min_rows:
                state.status, state.message = (
                    NOT_ENOUGH_DATA,
                    (f"{len(records)} of {self.settings.drift_min_rows} rows needed (DRIFT_MIN_ROWS)"),
                )
                self.metrics.enough_data.labels(dataset).set(0)
                return state.status
            self.metrics.enough_data.labels(dataset).set(1)
            try:
                reference = self._reference(state, dataset, state.window.latest_run_id())
                result = compute_drift(records, reference, self.spec)
            except Exception as error:  # a dead S3 / MLflow must not kill the worker: say it, retry later
                log.warning("drift for %s failed: %s", dataset, error)
                self.metrics.errors.labels(dataset).inc()
                state.status, state.message = "error", str(error)
                return state.status
            finished = time.time()
            self.metrics.publish(dataset, result, finished)
            state.result, state.computed_at = result, finished
            state.status, state.message = "ok", ""
            log.info("drift %s: %d rows, share %.3f in %.2fs", dataset, result.rows, result.share, result.duration_s)
        if self.trigger is not None:
            # outside the lock: it may build a snapshot and call Prefect; the served run says what it was trained on
            self.trigger.observe_drift(dataset, result.share, state.reference_run_id)
        return state.status

    def _reference(self, state: DatasetState, dataset: str, run_id: str | None) -> Reference:
        if state.reference is None or run_id != state.reference_run_id:
            frame, source = self.loader.load(dataset, run_id)
            state.reference = prepare_reference(frame, self.spec, source)
            state.reference_run_id = run_id
            self.metrics.set_reference(dataset, run_id, source)
        return state.reference

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            if self._thread is not None:
                self._thread.beat()
            self._wake.wait(timeout=5.0)
            if self._stop.is_set():
                return
            # debounce: let batches pile up until the interval since the last computation has passed
            wait = self.settings.drift_interval_seconds - (time.monotonic() - last)
            if wait > 0 and self._stop.wait(wait):
                return
            self._wake.clear()
            for name, state in self.datasets.items():
                if state.dirty or state.status == "error":
                    self.compute(name)
            last = time.monotonic()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = Supervised("drift-worker", self._loop).start()

    @property
    def restarts(self) -> int:
        return self._thread.restarts if self._thread is not None else 0

    def problems(self, max_silence_s: float) -> list[str]:
        """Why the worker is unwell (for /health): not started, dead, restarting or stuck."""
        return self._thread.problems(max_silence_s) if self._thread is not None else []

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.stop()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
