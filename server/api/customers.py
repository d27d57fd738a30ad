"""Scoring by customer id: GET /customers/<id>/features and GET /customers/<id>/churn.

The features come from the online store (mlops.stores.online, filled by `make materialize`) and go through the same
Scorer as a full record sent to POST /predict: the same validator and model, so both answers agree, and the same
prediction log and shadow model (an id-scored record is shadow-scored like any other live record). The answer names
the snapshot (data hash) the features came from. Unknown id: 404 naming it. Online store down: 503 naming
ONLINE_STORE_URI. A stored row that no longer fits the served model's spec: 409 with the field and the reason
(re-materialize).
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Blueprint, g, request

from mlops.contract import RecordError, rules
from mlops.stores.online import OnlineRow, OnlineStore, OnlineStoreUnavailable, open_online_store
from server.api.errors import ApiError
from server.api.predict import answer_of, explain_asked

if TYPE_CHECKING:
    from server.api.state import ApiState

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def lookup_metrics() -> Any:
    from prometheus_client import Counter

    return Counter(
        "predict_api_online_lookups_total", "Online-store lookups by customer id, by result", ["endpoint", "result"]
    )


def customers_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("customers", __name__)
    lock = threading.Lock()
    holder: dict[str, OnlineStore] = {}
    metrics = lookup_metrics()
    scorer = state.scorer

    def store() -> OnlineStore:
        with lock:
            if "store" not in holder:
                holder["store"] = open_online_store(state.settings)
            return holder["store"]

    def lookup(endpoint: str, customer_id: str) -> OnlineRow:
        service = scorer.model()  # ModelNotLoaded: 503
        try:
            customer_id = rules.customer_id(customer_id)  # the one id rule: bounded, storable text
        except ValueError as error:
            raise ApiError(400, "invalid customer id", str(error), "customer_id") from None
        if not customer_id.strip():
            raise ApiError(400, "invalid customer id", "must not be empty", "customer_id")
        try:
            row = store().get(service.spec.name, customer_id)
        except OnlineStoreUnavailable as error:
            metrics.labels(endpoint, "error").inc()
            log.warning("online lookup failed: %s", error)
            raise ApiError(503, "online store unavailable", str(error)) from None
        if row is None:
            metrics.labels(endpoint, "miss").inc()
            raise ApiError(
                404,
                "unknown customer",
                f"customer {customer_id!r} is not in the online store of '{service.spec.name}' "
                "(run `make materialize` after loading new data)",
                "customer_id",
            )
        metrics.labels(endpoint, "hit").inc()
        return row

    @routes.get("/customers/<customer_id>/features")
    def customer_features(customer_id: str) -> tuple[dict[str, Any], int]:
        row = lookup("/customers/<customer_id>/features", customer_id)
        id_column = state.service.spec.id_column if state.service else None
        return {
            (id_column or "customer_id"): row.customer_id,
            "features": row.features,
            "snapshot": row.snapshot,
            "materialized_at": row.materialized_at,
        }, 200

    @routes.get("/customers/<customer_id>/churn")
    def customer_churn(customer_id: str) -> tuple[dict[str, Any], int]:
        explain = explain_asked(request.args.get("explain"))
        row = lookup("/customers/<customer_id>/churn", customer_id)
        id_column = scorer.model().spec.id_column
        record = {**row.features, **({id_column: row.customer_id} if id_column else {})}
        try:
            scored = scorer.score([record], g.request_id, indexed=False)
        except RecordError as error:
            raise ApiError(
                409,
                "stale online features",
                f"the stored features of customer {customer_id!r} (snapshot {row.snapshot}) do not fit the served "
                f"model's spec: {error.reason}; run `make materialize`",
                error.field,
            ) from None
        why = scored.explain(explain)[0] if explain else None
        features = scored.spec.feature_columns
        answer = answer_of(float(scored.probabilities[0]), scored.run_id, scored.records[0], id_column, features, why)
        return {**answer, "snapshot": row.snapshot}, 200

    return routes
