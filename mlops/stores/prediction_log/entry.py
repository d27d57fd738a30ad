"""One prediction-log entry and the protocol every prediction store speaks.

An entry: prediction_id (time-ordered, unique: stores ignore an id they hold, so a replay never duplicates),
request_id, customer_id (the spec's id column, what an outcome by customer joins on), timestamp (ISO 8601 UTC with
microseconds, so it sorts), source, model_run_id, input (the validated features) and prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from mlops.stores.ids import iso, new_id, utc_now_iso

SOURCES = ("http", "kinesis", "batch", "shadow")  # shadow: a second model's score of a live record, never answered
PREDICTIONS = "predictions"
SUMMARIES = "report_summaries"


def make_entry(
    features: Mapping[str, Any],
    prediction: float,
    model_run_id: str,
    source: str,
    request_id: str,
    timestamp: datetime | str | None = None,
    customer_id: str | None = None,
    prediction_id: str | None = None,
) -> dict[str, Any]:
    """One log entry; JSON-ready (the timestamp is an ISO 8601 UTC string with microseconds, so it sorts).

    `customer_id` (the spec's id column, when the record carried it) is what an outcome by customer joins on;
    `prediction_id` is given where a replay must log the same entry (Kinesis), else new.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    stamp = iso(timestamp) if isinstance(timestamp, datetime) else timestamp or utc_now_iso()
    return {
        "prediction_id": prediction_id or new_id(),
        "request_id": request_id,
        "customer_id": customer_id,
        "timestamp": stamp,
        "source": source,
        "model_run_id": model_run_id,
        "input": dict(features),
        "prediction": float(prediction),
    }


class PredictionStore(Protocol):
    """A backend. `write_many` must be idempotent per `prediction_id` and raise StoreUnavailable when down."""

    uri: str

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None: ...

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]: ...

    def count(self) -> int: ...

    def by_request(self, request_id: str, limit: int) -> list[dict[str, Any]]: ...

    def write_summary(self, summary: Mapping[str, Any]) -> None: ...

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...
