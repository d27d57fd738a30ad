"""The drift service's Prometheus gauges, on a registry of its own (one per app, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitoring.evidently_service.drift import DriftResult


class DriftMetrics:
    """Names are what monitoring/prometheus/rules.yml and the Grafana dashboard query: change them together."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.worker_restarts = Gauge(
            "drift_service_worker_restarts", "Restarts of a background worker after an error", ["worker"], registry=r
        )
        self.worker_healthy = Gauge(
            "drift_service_worker_healthy",
            "1 while a background worker runs well (see /health)",
            ["worker"],
            registry=r,
        )
        self.share = Gauge("drift_share", "Share of features whose drift was detected", ["dataset"], registry=r)
        self.drifted = Gauge("drift_columns_drifted", "Number of drifted features", ["dataset"], registry=r)
        self.columns = Gauge("drift_columns_total", "Number of features checked for drift", ["dataset"], registry=r)
        self.column_score = Gauge(
            "drift_column_score", "Drift score of one feature (distance)", ["dataset", "column", "method"], registry=r
        )
        self.column_drifted = Gauge(
            "drift_column_drifted",
            "1 if the feature drifted in the last computation",
            ["dataset", "column"],
            registry=r,
        )
        self.window_rows = Gauge("drift_window_rows", "Records in the sliding window", ["dataset"], registry=r)
        self.reference_rows = Gauge("drift_reference_rows", "Rows of the reference sample", ["dataset"], registry=r)
        self.enough_data = Gauge(
            "drift_enough_data",
            "1 if the window reached DRIFT_MIN_ROWS (else: not enough data)",
            ["dataset"],
            registry=r,
        )
        self.prediction_mean = Gauge(
            "drift_prediction_mean", "Mean predicted churn chance in the window", ["dataset"], registry=r
        )
        self.last_computation = Gauge(
            "drift_last_computation_timestamp_seconds",
            "Unix time of the last drift computation",
            ["dataset"],
            registry=r,
        )
        self.duration = Gauge(
            "drift_computation_duration_seconds", "Duration of the last drift computation", ["dataset"], registry=r
        )
        self.received = Counter("drift_records_received", "Records accepted by /iterate", ["dataset"], registry=r)
        self.rejected = Counter("drift_batches_rejected", "Batches refused by /iterate (4xx)", ["reason"], registry=r)
        self.errors = Counter(
            "drift_computation_errors",
            "Drift computations that failed (reference unavailable...)",
            ["dataset"],
            registry=r,
        )
        self.model_info = Gauge(
            "drift_reference_info", "The reference in use (value 1)", ["dataset", "run_id", "source"], registry=r
        )

    def publish(self, dataset: str, result: DriftResult, finished_at: float) -> None:
        self.share.labels(dataset).set(result.share)
        self.drifted.labels(dataset).set(result.drifted_count)
        self.columns.labels(dataset).set(len(result.columns))
        self.reference_rows.labels(dataset).set(result.reference_rows)
        for column in result.columns:
            self.column_score.labels(dataset, column.column, column.method).set(column.score)
            self.column_drifted.labels(dataset, column.column).set(1.0 if column.drifted else 0.0)
        self.last_computation.labels(dataset).set(finished_at)
        self.duration.labels(dataset).set(result.duration_s)

    def set_reference(self, dataset: str, run_id: str | None, source: str) -> None:
        self.model_info.clear()
        self.model_info.labels(dataset, run_id or "", source).set(1)
