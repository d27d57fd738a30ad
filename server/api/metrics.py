"""The API's Prometheus metrics: made once per process on first use (after PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlops.model_service import ModelService


@lru_cache(maxsize=1)
def api_metrics() -> Any:
    from prometheus_client import Counter, Gauge, Histogram

    class Metrics:
        requests = Counter("predict_api_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"])
        latency = Histogram(
            "predict_api_request_duration_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        predictions = Histogram(
            "predict_api_prediction_churn_chance",
            "Predicted churn chance of every record answered",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
        )
        auth_failures = Counter(
            "predict_api_auth_failures", "Refused authentications, by reason (missing, invalid, scope, limited)",
            ["reason"],
        )  # fmt: skip
        missing_features = Counter(
            "predict_api_missing_features", "Predictions made with a feature missing (absent, null, a marker)",
            ["feature"],
        )  # fmt: skip
        records = Counter("predict_api_predicted_records_total", "Records scored (a batch counts each record)")
        model_info = Gauge(
            "predict_api_model_info",
            "The model being served (1 for the loaded run id)",
            ["run_id", "source"],
            multiprocess_mode="livemax",
        )
        model_loaded = Gauge("predict_api_model_loaded", "1 once this worker has a model", multiprocess_mode="livemin")

    return Metrics


def observe_predictions(probabilities: np.ndarray) -> None:
    """Every answered record: counted, and its churn chance into the histogram (the Scorer's `observe`)."""
    metrics = api_metrics()
    metrics.records.inc(len(probabilities))
    observe = metrics.predictions.observe
    for p in probabilities.tolist():
        observe(p)


_PUBLISHED: list[tuple[str, str]] = []  # the (run id, source) this process last published as served


def publish_model(service: ModelService) -> None:
    """The served model as `predict_api_model_info{run_id, source} 1`; the one it replaced goes to 0, so after a
    swap the gauge names one model, not both."""
    metrics = api_metrics()
    labels = (service.run_id, service.source)
    for previous in _PUBLISHED:
        if previous != labels:
            metrics.model_info.labels(run_id=previous[0], source=previous[1]).set(0)
    _PUBLISHED[:] = [labels]
    metrics.model_info.labels(run_id=service.run_id, source=service.source).set(1)
    metrics.model_loaded.set(1)
