"""The drift service's HTTP face: POST /iterate/<dataset>, GET /status, GET /performance, GET /metrics, GET /health.

Beside drift it computes the realized performance of each served model from the settled outcomes
(monitoring/evidently_service/performance.py), on the same /metrics.

`create_app(settings)` builds everything (spec, reference loader, monitor, gauges) and touches no network: the
reference is loaded by the background worker on the first computation, so the service starts even while S3 or
MLflow are down and says so in /status.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from mlops.settings import Settings
from mlops.spec import FeatureSpec
from monitoring.evidently_service.drift import BatchError, validate_batch
from monitoring.evidently_service.metrics import DriftMetrics
from monitoring.evidently_service.monitor import DriftMonitor
from monitoring.evidently_service.performance import PerformanceMetrics, PerformanceMonitor
from monitoring.evidently_service.reference import ReferenceLoader
from monitoring.evidently_service.retrain import RetrainTrigger

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    monitor: DriftMonitor | None = None,
    start_worker: bool = True,
    performance: PerformanceMonitor | None = None,
) -> Flask:
    """The Flask app; `start_worker=False` (tests) leaves computations to explicit `compute()` calls."""
    trigger = RetrainTrigger(settings)
    if monitor is None:
        spec = FeatureSpec.load(settings.feature_spec)
        monitor = DriftMonitor(settings, spec, ReferenceLoader(settings), DriftMetrics(), trigger)
    if performance is None:
        from mlops.stores.outcomes import open_outcome_store

        performance = PerformanceMonitor(
            settings,
            monitor.spec.name,
            lambda: open_outcome_store(settings),
            PerformanceMetrics(monitor.metrics.registry),
            monitor.trigger,
        )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["drift_monitor"] = monitor
    app.extensions["performance_monitor"] = performance
    metrics = monitor.metrics

    @app.post("/iterate/<dataset>")
    def iterate(dataset: str) -> tuple[Response, int]:
        if not monitor.known(dataset):
            metrics.rejected.labels("unknown_dataset").inc()
            return jsonify(error=f"unknown data set '{dataset}'; known: {sorted(monitor.datasets)}"), 404
        payload = request.get_json(silent=True)
        if payload is None:
            metrics.rejected.labels("not_json").inc()
            return jsonify(error="body must be JSON (Content-Type: application/json): a list of record objects"), 400
        try:
            records = validate_batch(payload, monitor.spec, settings.max_batch_records)
        except BatchError as error:
            metrics.rejected.labels("invalid").inc()
            return jsonify(error.as_dict()), 422
        size = monitor.ingest(dataset, records)
        return jsonify(accepted=len(records), window_rows=size), 202

    @app.get("/status")
    def status() -> Response:
        return jsonify(monitor.status())

    @app.get("/performance")
    def realized_performance() -> Response:
        """Realized metrics per model run, or "not enough outcomes" with the count (what the gauges hold)."""
        return jsonify(performance.status())

    @app.get("/retrain")
    def retrain_status() -> Response:
        """The retraining trigger: thresholds, consecutive drifted computations, the last run it started."""
        return jsonify(monitor.trigger.status() if monitor.trigger is not None else {"enabled": False})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", datasets=sorted(monitor.datasets))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        code = error.code or 500
        if code == 413:
            return jsonify(error=f"body larger than {settings.max_body_bytes} bytes (MAX_BODY_BYTES)"), 413
        return jsonify(error=error.description), code

    if start_worker:
        monitor.start()
        performance.start()
    return app


def app_info(app: Flask) -> dict[str, Any]:
    return app.extensions["drift_monitor"].status()
