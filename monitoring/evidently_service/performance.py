"""Realized performance per served model run: settled predictions from the outcome store -> Prometheus gauges.

A sibling of the drift monitor in the same service (same /metrics, same Prometheus target): every
PERFORMANCE_INTERVAL_SECONDS it reads the newest OUTCOME_WINDOW_SIZE settlements of each model run and publishes
ROC AUC, PR AUC, Brier score, log loss, calibration error, observed churn rate and mean predicted probability, with
the model run id as a label. Below OUTCOME_MIN_LABELS a run publishes only its label count and
`realized_enough_labels 0`: no figure from ten rows reaches a dashboard or an alert. The floor the alert compares
with (REALIZED_AUC_FLOOR) is a gauge too, so changing the setting needs no change to the rule file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from mlops.performance import NotEnough, Performance, realized
from mlops.settings import Settings
from mlops.supervision import Supervised

log = logging.getLogger(__name__)

FIGURES = {
    "roc_auc": ("realized_roc_auc", "ROC AUC of the settled predictions in the window"),
    "pr_auc": ("realized_pr_auc", "PR AUC (average precision) of the settled predictions in the window"),
    "brier": ("realized_brier_score", "Brier score of the settled predictions in the window"),
    "log_loss": ("realized_log_loss", "Log loss of the settled predictions in the window"),
    "calibration_error": ("realized_calibration_error", "Expected calibration error (10 equal-width bins)"),
    "observed_rate": ("realized_observed_churn_rate", "Share of churners among the settled predictions"),
    "mean_predicted": ("realized_mean_predicted_churn", "Mean predicted churn chance of the same rows"),
}


class PerformanceMetrics:
    """Names are what monitoring/prometheus/rules.yml and the Grafana dashboard query: change them together."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["dataset", "model_run_id"]
        self.figures = {key: Gauge(name, doc, labels, registry=registry) for key, (name, doc) in FIGURES.items()}
        self.labels = Gauge("realized_labels", "Settled predictions in the window", labels, registry=registry)
        self.enough = Gauge(
            "realized_enough_labels",
            "1 if the window holds OUTCOME_MIN_LABELS settled predictions",
            labels,
            registry=registry,
        )
        self.floor = Gauge("realized_roc_auc_floor", "REALIZED_AUC_FLOOR", ["dataset"], registry=registry)
        self.min_labels = Gauge("realized_min_labels", "OUTCOME_MIN_LABELS", ["dataset"], registry=registry)
        self.errors = Gauge(
            "realized_computation_failed",
            "1 if the last read of the outcome store failed",
            ["dataset"],
            registry=registry,
        )

    def publish(self, dataset: str, run_id: str, result: Performance | NotEnough) -> None:
        self.labels.labels(dataset, run_id).set(result.labels)
        if isinstance(result, NotEnough):
            self.enough.labels(dataset, run_id).set(0)
            for gauge in self.figures.values():
                with contextlib.suppress(KeyError):
                    gauge.remove(dataset, run_id)
            return
        self.enough.labels(dataset, run_id).set(1)
        values = result.as_dict()
        for key, gauge in self.figures.items():
            gauge.labels(dataset, run_id).set(values[key])


class PerformanceMonitor:
    """Reads settlements, computes, publishes; `compute()` is one pass (the worker's, or a test's)."""

    def __init__(
        self,
        settings: Settings,
        dataset: str,
        open_store: Callable[[], Any],
        metrics: PerformanceMetrics,
        trigger: Any = None,
    ) -> None:
        self.settings = settings
        self.trigger = trigger  # RetrainTrigger: told the served model's realized ROC AUC
        self.dataset = dataset
        self._open_store = open_store
        self._store: Any = None
        self.metrics = metrics
        self.results: dict[str, Performance | NotEnough] = {}
        self.error: str | None = None
        self.computed_at: float | None = None
        self._stop = threading.Event()
        self._thread: Supervised | None = None
        metrics.floor.labels(dataset).set(settings.realized_auc_floor)
        metrics.min_labels.labels(dataset).set(settings.outcome_min_labels)
        metrics.errors.labels(dataset).set(0)

    def compute(self) -> dict[str, Performance | NotEnough]:
        try:
            if self._store is None:
                self._store = self._open_store()
            results: dict[str, Performance | NotEnough] = {}
            newest = self._store.settled(limit=1)
            served = newest[0]["model_run_id"] if newest else None  # the model whose outcomes arrive now
            for run_id in self._store.run_ids():
                rows = self._store.settled(run_id, limit=self.settings.outcome_window_size)
                results[run_id] = realized(
                    [r["label"] for r in rows], [r["prediction"] for r in rows], self.settings.outcome_min_labels
                )
        except Exception as error:  # a dead store must not kill the worker: say it, retry next time
            self.error = f"{type(error).__name__}: {error}"
            self.metrics.errors.labels(self.dataset).set(1)
            log.warning("realized performance not computed: %s", self.error)
            return self.results
        for run_id, result in results.items():
            self.metrics.publish(self.dataset, run_id, result)
        self.results, self.error, self.computed_at = results, None, time.time()
        self.metrics.errors.labels(self.dataset).set(0)
        current = results.get(served) if served else None
        if self.trigger is not None and isinstance(current, Performance):
            self.trigger.observe_performance(self.dataset, str(served), current.roc_auc)
        return results

    def status(self) -> dict[str, Any]:
        runs = {}
        for run_id, result in self.results.items():
            if isinstance(result, NotEnough):
                runs[run_id] = {"status": "not enough outcomes", "labels": result.labels, "message": result.message}
            else:
                runs[run_id] = {"status": "ok", **result.as_dict()}
        return {
            "dataset": self.dataset,
            "window_size": self.settings.outcome_window_size,
            "min_labels": self.settings.outcome_min_labels,
            "roc_auc_floor": self.settings.realized_auc_floor,
            "computed_at": self.computed_at,
            "error": self.error,
            "runs": runs,
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._thread is not None:
                self._thread.beat()
            self.compute()
            self._stop.wait(self.settings.performance_interval_seconds)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = Supervised("performance-worker", self._loop).start()

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
        if self._thread is not None:
            self._thread.join(timeout=10)
