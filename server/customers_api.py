"""Scoring by customer id: GET /customers/<id>/features and GET /customers/<id>/churn.

The features come from the online store (mlops.online_store, filled by `make materialize`) and go through the same
validator and model as a full record sent to POST /predict, so both answers agree; the answer names the snapshot
(data hash) the features came from. Unknown id: 404 naming it. Online store down: 503 naming ONLINE_STORE_URI.
A stored row that no longer fits the served model's spec: 409 with the field and the reason (re-materialize).
Same key and rate limit as every other path (the app's before_request hooks); each answered prediction is logged
like one of /predict, with the customer id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Flask

from mlops.contract import RecordError
from mlops.online_store import OnlineRow, OnlineStoreUnavailable

if TYPE_CHECKING:
    from mlops.online_store import OnlineStore
    from server.predict_api import ApiState

log = logging.getLogger(__name__)
MAX_ID_LENGTH = 128


@lru_cache(maxsize=1)
def lookup_metrics() -> Any:
    from prometheus_client import Counter

    return Counter(
        "predict_api_online_lookups_total", "Online-store lookups by customer id, by result", ["endpoint", "result"]
    )


def register_customers(
    app: Flask,
    state: ApiState,
    api_error: type[Exception],
    to_sinks: Callable[..., None],
    answer_of: Callable[..., dict[str, Any]],
    observe: Callable[[float], None],
) -> None:
    """Add the two routes; `to_sinks`, `answer_of` and `observe` (the prediction metrics) are the API's own, passed
    in rather than imported: under gunicorn the API module runs as __main__, and a second import of it would
    register its Prometheus metrics twice."""
    lock = threading.Lock()
    holder: dict[str, OnlineStore] = {}
    metrics = lookup_metrics()

    def store() -> OnlineStore:
        with lock:
            if "store" not in holder:
                from mlops.online_store import open_online_store

                holder["store"] = open_online_store(state.settings)
            return holder["store"]

    def lookup(endpoint: str, customer_id: str) -> OnlineRow:
        state.follow_switch()
        if state.service is None:
            raise api_error(503, "model not loaded", state.load_error or "the model is still loading")
        if len(customer_id) > MAX_ID_LENGTH or not customer_id.strip():
            raise api_error(400, "invalid customer id", f"must be 1-{MAX_ID_LENGTH} characters", "customer_id")
        try:
            row = store().get(state.service.spec.name, customer_id)
        except OnlineStoreUnavailable as error:
            metrics.labels(endpoint, "error").inc()
            log.warning("online lookup failed: %s", error)
            raise api_error(503, "online store unavailable", str(error)) from None
        if row is None:
            metrics.labels(endpoint, "miss").inc()
            raise api_error(
                404,
                "unknown customer",
                f"customer {customer_id!r} is not in the online store of '{state.service.spec.name}' "
                "(run `make materialize` after loading new data)",
                "customer_id",
            )
        metrics.labels(endpoint, "hit").inc()
        return row

    @app.get("/customers/<customer_id>/features")
    def customer_features(customer_id: str) -> tuple[dict[str, Any], int]:
        row = lookup("/customers/<customer_id>/features", customer_id)
        id_column = state.service.spec.id_column if state.service else None
        return {
            (id_column or "customer_id"): row.customer_id,
            "features": row.features,
            "snapshot": row.snapshot,
            "materialized_at": row.materialized_at,
        }, 200

    @app.get("/customers/<customer_id>/churn")
    def customer_churn(customer_id: str) -> tuple[dict[str, Any], int]:
        row = lookup("/customers/<customer_id>/churn", customer_id)
        current = state.service
        assert current is not None  # lookup() answered 503 otherwise
        id_column = current.spec.id_column
        record = {**row.features, **({id_column: row.customer_id} if id_column else {})}
        try:
            valid = current.validate([record], indexed=False)
        except RecordError as error:
            raise api_error(
                409,
                "stale online features",
                f"the stored features of customer {customer_id!r} (snapshot {row.snapshot}) do not fit the served "
                f"model's spec: {error.reason}; run `make materialize`",
                error.field,
            ) from None
        probabilities, run_id = current.predict_with_run(valid)
        observe(float(probabilities[0]))
        to_sinks(state, valid, probabilities, run_id, id_column)
        return {**answer_of(float(probabilities[0]), run_id, valid[0], id_column), "snapshot": row.snapshot}, 200
