"""Outcomes and settlements in MongoDB (compose), beside the `predictions` collection."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mlops.outcomes import Outcome
from mlops.stores.base import unavailable
from mlops.stores.ids import iso, utc_now_iso
from mlops.stores.outcomes.report import (
    ARCHIVE_STATE,
    CONFLICT,
    DUPLICATE,
    OUTCOMES,
    SETTLED,
    SETTLEMENTS,
    UNKNOWN,
    Candidate,
    IngestReport,
    choose,
    unmatched,
)
from mlops.stores.prediction_log.entry import PREDICTIONS


class MongoOutcomeStore:
    """Collections `outcomes` (_id = outcome id) and `settlements` (_id = prediction id) beside `predictions`."""

    def __init__(self, uri: str, client_factory: Callable[..., Any] | None = None, timeout_ms: int = 2000) -> None:
        import pymongo
        from pymongo.uri_parser import parse_uri

        self.uri = uri
        self._errors = (pymongo.errors.PyMongoError,)
        factory = client_factory or pymongo.MongoClient
        self._client = factory(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
        self._db = self._client[parse_uri(uri).get("database") or "mlops"]
        self._indexed = False

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            if not self._indexed:
                self._db[SETTLEMENTS].create_index([("model_run_id", 1), ("seq", -1)])
                self._db[SETTLEMENTS].create_index("predicted_at")
                self._indexed = True
            return action()
        except self._errors as error:
            raise unavailable("outcome store", "PREDICTION_LOG_URI", self.uri, error) from error

    def _candidates(self, query: dict[str, Any], newest_only: bool = False) -> list[Candidate]:
        cursor = self._db[PREDICTIONS].find(query)
        if newest_only:
            cursor = cursor.sort([("timestamp", -1)]).limit(1)
        return [
            Candidate(
                d["_id"],
                d.get("customer_id"),
                d["model_run_id"],
                float(d["prediction"]),
                iso(d["timestamp"]),
                d["source"],
            )
            for d in cursor
        ]

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport:
        report = IngestReport()

        def ingest() -> None:
            state = self._db[ARCHIVE_STATE].find_one({"_id": "archived_before"})
            report.archived_before = state["value"] if state else None
            for outcome in outcomes:
                report.count(self._one(outcome, report.archived_before), outcome)

        self._guard(ingest)
        return report

    def _one(self, outcome: Outcome, archived: str | None) -> str:
        from pymongo.errors import DuplicateKeyError

        outcome_id = outcome.outcome_id
        seen = self._db[OUTCOMES].find_one({"_id": outcome_id}, {"status": 1})
        if seen is not None and seen["status"] in (SETTLED, DUPLICATE, CONFLICT):
            return DUPLICATE
        live = {"source": {"$ne": "shadow"}}
        by_request = (
            self._candidates({"request_id": outcome.request_id} | live) if outcome.request_id is not None else []
        )
        latest = None
        if outcome.customer_id is not None and not by_request:
            found = self._candidates(
                {"customer_id": outcome.customer_id, "timestamp": {"$lte": outcome.observed_at}} | live,
                newest_only=True,
            )
            latest = found[0] if found else None
        chosen = choose(outcome, by_request, latest)
        prediction_id = None if isinstance(chosen, str) else chosen.prediction_id
        if isinstance(chosen, str):
            status = unmatched(outcome, archived) if chosen == UNKNOWN else chosen
        else:
            now = datetime.now(UTC)
            document = {
                "_id": chosen.prediction_id,
                "seq": now.timestamp(),
                "prediction_id": chosen.prediction_id,
                "outcome_id": outcome_id,
                "model_run_id": chosen.model_run_id,
                "source": chosen.source,
                "prediction": chosen.prediction,
                "predicted_at": chosen.timestamp,
                "label": outcome.label,
                "observed_at": iso(outcome.observed_at),
                "settled_at": iso(now),
            }
            try:
                self._db[SETTLEMENTS].insert_one(document)
                status = SETTLED
                original = self._db[PREDICTIONS].find_one({"_id": chosen.prediction_id}, {"request_id": 1}) or {}
                twins = self._candidates(
                    {"request_id": original.get("request_id"), "source": "shadow", "customer_id": chosen.customer_id}
                )
                for twin in twins:  # the shadow model's score of the same record
                    twin_document = document | {
                        "_id": twin.prediction_id,
                        "prediction_id": twin.prediction_id,
                        "model_run_id": twin.model_run_id,
                        "source": twin.source,
                        "prediction": twin.prediction,
                        "predicted_at": twin.timestamp,
                    }
                    with contextlib.suppress(DuplicateKeyError):
                        self._db[SETTLEMENTS].insert_one(twin_document)
            except DuplicateKeyError:
                earlier = self._db[SETTLEMENTS].find_one({"_id": chosen.prediction_id}, {"label": 1})
                status = DUPLICATE if earlier and earlier["label"] == outcome.label else CONFLICT
        self._db[OUTCOMES].replace_one(
            {"_id": outcome_id},
            {
                "request_id": outcome.request_id,
                "customer_id": outcome.customer_id,
                "label": outcome.label,
                "observed_at": iso(outcome.observed_at),
                "received_at": utc_now_iso(),
                "status": status,
                "prediction_id": prediction_id,
            },
            upsert=True,
        )
        return status

    def settled(self, model_run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        query = {"model_run_id": model_run_id} if model_run_id is not None else {}

        def read() -> list[dict[str, Any]]:
            cursor = self._db[SETTLEMENTS].find(query, {"_id": 0}).sort([("seq", -1)])
            return list(cursor.limit(int(limit)) if limit else cursor)

        return list(reversed(self._guard(read)))

    def settled_between(
        self, since: datetime, until: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        window: dict[str, Any] = {"$gte": iso(since)}
        if until is not None:
            window["$lt"] = iso(until)

        def read() -> list[dict[str, Any]]:
            cursor = self._db[SETTLEMENTS].find({"predicted_at": window}, {"_id": 0}).sort([("predicted_at", -1)])
            return list(reversed(list(cursor.limit(int(limit)) if limit is not None else cursor)))

        return self._guard(read)

    def run_ids(self) -> list[str]:
        return sorted(self._guard(lambda: self._db[SETTLEMENTS].distinct("model_run_id")))

    def settled_inputs(self, limit: int) -> list[tuple[dict[str, Any], int]]:
        def read() -> list[tuple[dict[str, Any], int]]:
            newest = list(self._db[SETTLEMENTS].find({}, {"_id": 1, "label": 1}).sort([("seq", -1)]).limit(int(limit)))
            inputs = {
                d["_id"]: d["input"]
                for d in self._db[PREDICTIONS].find({"_id": {"$in": [s["_id"] for s in newest]}}, {"input": 1})
            }
            return [(inputs[s["_id"]], int(s["label"])) for s in reversed(newest) if s["_id"] in inputs]

        return self._guard(read)

    def settled_records(self, limit: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            newest = list(
                self._db[SETTLEMENTS]
                .find({"source": {"$ne": "shadow"}}, {"_id": 1, "label": 1, "predicted_at": 1})
                .sort([("seq", -1)])
                .limit(int(limit))
            )
            found = {
                d["_id"]: d
                for d in self._db[PREDICTIONS].find(
                    {"_id": {"$in": [s["_id"] for s in newest]}}, {"input": 1, "customer_id": 1}
                )
            }
            return [
                {
                    "input": found[s["_id"]]["input"],
                    "label": int(s["label"]),
                    "customer_id": found[s["_id"]].get("customer_id"),
                    "predicted_at": s["predicted_at"],
                }
                for s in reversed(newest)
                if s["_id"] in found
            ]

        return self._guard(read)

    def close(self) -> None:
        self._client.close()
