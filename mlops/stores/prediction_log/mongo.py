"""The prediction log in MongoDB (compose): collections `predictions` (`_id` = prediction_id) and `report_summaries`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlops.stores.base import unavailable
from mlops.stores.ids import as_utc
from mlops.stores.prediction_log.entry import PREDICTIONS, SUMMARIES

WHAT, SETTING = "prediction store", "PREDICTION_LOG_URI"


class MongoStore:
    """MongoDB through pymongo: collections `predictions` (`_id` = prediction_id) and `report_summaries`."""

    def __init__(
        self,
        uri: str,
        client_factory: Callable[..., Any] | None = None,
        timeout_ms: int = 2000,
        database: str | None = None,
    ) -> None:
        import pymongo
        from pymongo.uri_parser import parse_uri

        self.uri = uri
        self._errors = (pymongo.errors.PyMongoError,)
        factory = client_factory or pymongo.MongoClient
        self._client = factory(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True)
        self._db = self._client[database or parse_uri(uri).get("database") or "mlops"]
        self._indexed = False

    def _collection(self) -> Any:
        collection = self._db[PREDICTIONS]
        if not self._indexed:
            from pymongo.errors import OperationFailure

            with contextlib.suppress(OperationFailure):  # the archive's TTL index of that key serves as well
                collection.create_index("timestamp")
            collection.create_index("request_id")
            collection.create_index([("customer_id", 1), ("timestamp", -1)])
            self._indexed = True
        return collection

    def write_many(self, entries: Sequence[Mapping[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        documents = [
            {
                "_id": e["prediction_id"],
                **{k: v for k, v in e.items() if k != "timestamp"},
                "timestamp": datetime.fromisoformat(e["timestamp"]),
            }
            for e in entries
        ]
        if not documents:
            return
        try:
            self._collection().insert_many(documents, ordered=False)
        except BulkWriteError as error:
            # already written by an earlier, half-finished attempt: fine; anything else is a real failure
            others = [w for w in error.details.get("writeErrors", []) if w.get("code") != 11000]
            if error.details.get("writeConcernErrors"):
                raise unavailable(WHAT, SETTING, self.uri, error) from error
            if others:  # the server refused these documents (too large, a bad value): content, not an outage
                first = others[0]
                raise ValueError(
                    f"MongoDB refused {len(others)} document(s): code {first.get('code')}: {first.get('errmsg')}"
                ) from error
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error

    def read(self, since: datetime, until: datetime | None, limit: int | None) -> list[dict[str, Any]]:
        window: dict[str, Any] = {"$gte": as_utc(since)}
        if until is not None:
            window["$lt"] = as_utc(until)
        try:
            cursor = (
                self._db[PREDICTIONS].find({"timestamp": window}, {"_id": 0}).sort([("timestamp", -1), ("_id", -1)])
            )
            if limit is not None:
                cursor = cursor.limit(int(limit))
            found = list(cursor)
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error
        for document in found:
            document["timestamp"] = as_utc(document["timestamp"])
        return list(reversed(found))

    def by_request(self, request_id: str, limit: int) -> list[dict[str, Any]]:
        """The entries logged under one request id (indexed), oldest first."""
        try:
            cursor = self._db[PREDICTIONS].find({"request_id": request_id}, {"_id": 0}).sort([("timestamp", 1)])
            found = list(cursor.limit(int(limit)))
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error
        for document in found:
            document["timestamp"] = as_utc(document["timestamp"])
        return found

    def count(self) -> int:
        try:
            return int(self._db[PREDICTIONS].count_documents({}))
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        try:
            self._db[SUMMARIES].insert_one({**dict(summary), "created_at": datetime.now(UTC)})
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error

    def read_summaries(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            cursor = self._db[SUMMARIES].find({}, {"_id": 0}).sort([("created_at", -1), ("_id", -1)])
            found = list(cursor.limit(int(limit)) if limit else cursor)
        except self._errors as error:
            raise unavailable(WHAT, SETTING, self.uri, error) from error
        return list(reversed(found))

    def close(self) -> None:
        self._client.close()
