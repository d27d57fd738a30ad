"""POST /outcomes: observed labels for earlier predictions, settled against the prediction log.

One outcome or a list (see mlops.outcomes for the fields). The answer counts what happened to each: settled,
duplicates (sent before: counted once), unknown (no such prediction logged yet; the first few named), ambiguous,
conflicts. Same key and rate limit as /predict (the app's before_request hooks apply to every path); a bad field
is a 422 naming it (with `index` in a list); a dead store is a 503 naming PREDICTION_LOG_URI.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Blueprint

from mlops.contract import RecordError
from mlops.outcomes import contract_for
from mlops.spec import FeatureSpec
from mlops.stores.base import StoreUnavailable
from mlops.stores.outcomes import OutcomeStore, ingest_isolating, open_outcome_store
from server.api.body import parse_records, read_body
from server.api.errors import ApiError

if TYPE_CHECKING:
    from server.api.state import ApiState

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def outcome_metrics() -> Any:
    from prometheus_client import Counter

    return Counter(
        "predict_api_outcomes_total", "Outcomes received by POST /outcomes, by what became of them", ["status"]
    )


def outcomes_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("outcomes", __name__)
    store_lock = threading.Lock()
    holder: dict[str, OutcomeStore] = {}
    fallback: dict[str, FeatureSpec] = {}
    metrics = outcome_metrics()

    def store() -> OutcomeStore:
        with store_lock:
            if "store" not in holder:
                holder["store"] = open_outcome_store(state.settings)
            return holder["store"]

    def spec() -> FeatureSpec:
        if state.service is not None:
            return state.service.spec
        if "spec" not in fallback:  # no model yet: the spec file of these settings names the same data set
            fallback["spec"] = FeatureSpec.load(state.settings.feature_spec)
        return fallback["spec"]

    @routes.post("/outcomes")
    def outcomes() -> tuple[dict[str, Any], int]:
        records, single = parse_records(read_body(), state.settings.max_batch_records)
        contract = contract_for(spec())
        try:
            parsed = [contract(record, None if single else i) for i, record in enumerate(records)]
        except RecordError as error:
            raise ApiError(422, "invalid outcome", error.reason, error.field, error.index) from None
        try:
            report = ingest_isolating(store(), parsed, state.settings)
        except StoreUnavailable as error:
            log.warning("outcomes not stored: %s", error)
            raise ApiError(503, "outcome store unavailable", f"{error}; nothing was stored, send again") from None
        for status, count in (
            ("settled", report.settled),
            ("duplicate", report.duplicates),
            ("unknown", report.unknown),
            ("ambiguous", report.ambiguous),
            ("conflict", report.conflicts),
            ("refused", report.refused),
        ):
            if count:
                metrics.labels(status=status).inc(count)
        return report.as_dict(), 200

    return routes
