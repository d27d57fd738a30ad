"""The drift service's HTTP face: POST /iterate/<dataset>, GET /status, GET /performance, GET /metrics, GET /health.

POST /iterate takes records only with DRIFT_SERVICE_KEY in `x-service-key` when the key is set (mlops.control_plane):
whoever feeds the window steers the drift figures and the retraining trigger. The GET endpoints are read-only.

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

from mlops.contract.text import TextError, loads_text
from mlops.control_plane import SERVICE_KEY_HEADER, service_key_ok
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from monitoring.evidently_service.drift import BatchError, split_batch
from monitoring.evidently_service.metrics import DriftMetrics
from monitoring.evidently_service.monitor import DriftMonitor
from monitoring.evidently_service.performance import PerformanceMetrics, PerformanceMonitor
from monitoring.evidently_service.reference import ReferenceLoader
from monitoring.evidently_service.retrain import RetrainTrigger

log = logging.getLogger(__name__)


STUCK_S = 300.0  # a computation may take this long (Evidently on a full window) before a worker counts as stuck


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
        if not service_key_ok(settings, request.headers.get(SERVICE_KEY_HEADER)):
            metrics.rejected.labels("unauthorized").inc()
            return jsonify(
                error=f"missing or wrong {SERVICE_KEY_HEADER} (DRIFT_SERVICE_KEY)", field=SERVICE_KEY_HEADER
            ), 401
        if not monitor.known(dataset):
            metrics.rejected.labels("unknown_dataset").inc()
            return jsonify(error=f"unknown data set '{dataset}'; known: {sorted(monitor.datasets)}"), 404
        try:
            payload = loads_text(request.get_data(cache=False))
        except TextError as error:
            metrics.rejected.labels("invalid").inc()
            return jsonify(error=error.reason, field=error.field), 422
        except (ValueError, RecursionError):
            metrics.rejected.labels("not_json").inc()
            return jsonify(error="body must be JSON (Content-Type: application/json): a list of record objects"), 400
        try:
            records, refused = split_batch(payload, monitor.spec, settings.max_batch_records)
        except BatchError as error:
            metrics.rejected.labels("invalid").inc()
            return jsonify(error.as_dict()), 422
        if refused:
            metrics.rejected.labels("invalid").inc(len(refused))
        if not records:
            return jsonify(refused[0].as_dict()), 422
        size = monitor.ingest(dataset, records)
        answer: dict[str, Any] = {"accepted": len(records), "window_rows": size}
        if refused:  # the good records are in the window; these were not (the first few named)
            answer["refused"] = len(refused)
            answer["errors"] = [error.as_dict() for error in refused[:10]]
        return jsonify(answer), 202

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

    def worker_problems() -> dict[str, list[str]]:
        return {
            "drift-worker": monitor.problems(settings.drift_interval_seconds + STUCK_S),
            "performance-worker": performance.problems(settings.performance_interval_seconds + STUCK_S),
        }

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        for worker, problems in worker_problems().items():
            metrics.worker_healthy.labels(worker=worker).set(0 if problems else 1)
        metrics.worker_restarts.labels(worker="drift-worker").set(monitor.restarts)
        metrics.worker_restarts.labels(worker="performance-worker").set(performance.restarts)
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> Response:
        """200 while it serves; "degraded" with the reasons when a worker died, restarts or is stuck."""
        problems = [problem for found in worker_problems().values() for problem in found]
        answer: dict[str, Any] = {"status": "degraded" if problems else "ok", "datasets": sorted(monitor.datasets)}
        if problems:
            answer["problems"] = problems
        return jsonify(answer)

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
