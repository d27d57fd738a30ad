"""Outcomes beside the prediction log: each accepted outcome, and the prediction it settled.

Same store as the prediction log (PREDICTION_LOG_URI: the SQLite file natively, MongoDB in compose), so the join
is a query, not a copy. An outcome is joined to the prediction it settles:

1. by `request_id`: the prediction logged under that id; when several share it (the records of one HTTP batch),
   the one of the outcome's customer; several left and no customer to tell them apart -> `ambiguous`;
2. else by customer id: the newest prediction for that customer made at or before `observed_at`.

A prediction is settled once. The same outcome again (same ids, label and time) is a `duplicate`; another outcome
with the same label for an already settled prediction is a duplicate too; one with the other label is a `conflict`
(the first stays). An outcome whose prediction is not (yet) in the log is `unknown`: it is kept, and sending it
again later, once the prediction is logged, settles it. Every count goes back to the sender; nothing is dropped.

Settlements copy what the metrics need (model run id, probability, label), so a window is one indexed query.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mlops.outcomes import Outcome
from mlops.prediction_log import PREDICTIONS, SQLiteStore, StoreUnavailable, _down, _iso, utc_now_iso
from mlops.settings import Settings

OUTCOMES = "outcomes"
SETTLEMENTS = "settlements"
MAX_LISTED = 20  # unknown / ambiguous keys named in an answer

SETTLED, DUPLICATE, UNKNOWN, AMBIGUOUS, CONFLICT = "settled", "duplicate", "unknown", "ambiguous", "conflict"


@dataclass
class IngestReport:
    """What happened to each outcome of one call; `unknown_keys` names the first few not matched."""

    received: int = 0
    settled: int = 0
    duplicates: int = 0
    unknown: int = 0
    ambiguous: int = 0
    conflicts: int = 0
    unknown_keys: list[str] = field(default_factory=list)
    ambiguous_keys: list[str] = field(default_factory=list)

    def count(self, status: str, outcome: Outcome) -> None:
        self.received += 1
        if status == SETTLED:
            self.settled += 1
        elif status == DUPLICATE:
            self.duplicates += 1
        elif status == CONFLICT:
            self.conflicts += 1
        elif status == UNKNOWN:
            self.unknown += 1
            if len(self.unknown_keys) < MAX_LISTED:
                self.unknown_keys.append(outcome.key)
        elif status == AMBIGUOUS:
            self.ambiguous += 1
            if len(self.ambiguous_keys) < MAX_LISTED:
                self.ambiguous_keys.append(outcome.key)

    def merge(self, other: IngestReport) -> None:
        for name in ("received", "settled", "duplicates", "unknown", "ambiguous", "conflicts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unknown_keys = (self.unknown_keys + other.unknown_keys)[:MAX_LISTED]
        self.ambiguous_keys = (self.ambiguous_keys + other.ambiguous_keys)[:MAX_LISTED]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """A logged prediction an outcome may settle."""

    prediction_id: str
    customer_id: str | None
    model_run_id: str
    prediction: float
    timestamp: str
    source: str


def choose(outcome: Outcome, by_request: list[Candidate], latest_of_customer: Candidate | None) -> Candidate | str:
    """The join rule (pure): the prediction `outcome` settles, or UNKNOWN / AMBIGUOUS."""
    if outcome.request_id is not None:
        found = by_request
        if outcome.customer_id is not None and len(found) > 1:
            found = [c for c in found if c.customer_id == outcome.customer_id]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            return AMBIGUOUS
        if outcome.customer_id is None:
            return UNKNOWN
    return latest_of_customer if latest_of_customer is not None else UNKNOWN


class OutcomeStore(Protocol):
    uri: str

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport: ...

    def settled(self, model_run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]: ...

    def settled_between(self, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]: ...

    def run_ids(self) -> list[str]: ...

    def settled_inputs(self, limit: int) -> list[tuple[dict[str, Any], int]]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------- SQLite
class SQLiteOutcomeStore:
    """Tables `outcomes` and `settlements` in the prediction log's SQLite file; one transaction per call."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._log = SQLiteStore(uri)  # owns the file, the predictions table and its indexes
        self._ready = False

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        def with_schema(connection: sqlite3.Connection) -> Any:
            if not self._ready:
                connection.executescript(
                    f"""
                    CREATE TABLE IF NOT EXISTS {OUTCOMES} (
                        outcome_id TEXT PRIMARY KEY,
                        request_id TEXT,
                        customer_id TEXT,
                        label INTEGER NOT NULL,
                        observed_at TEXT NOT NULL,
                        received_at TEXT NOT NULL,
                        status TEXT NOT NULL,
                        prediction_id TEXT
                    );
                    CREATE TABLE IF NOT EXISTS {SETTLEMENTS} (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        prediction_id TEXT NOT NULL UNIQUE,
                        outcome_id TEXT NOT NULL,
                        model_run_id TEXT NOT NULL,
                        source TEXT NOT NULL,
                        prediction REAL NOT NULL,
                        predicted_at TEXT NOT NULL,
                        label INTEGER NOT NULL,
                        observed_at TEXT NOT NULL,
                        settled_at TEXT NOT NULL
                    );
                    CREATE INDEX IF NOT EXISTS {SETTLEMENTS}_run ON {SETTLEMENTS} (model_run_id, seq);
                    CREATE INDEX IF NOT EXISTS {SETTLEMENTS}_predicted ON {SETTLEMENTS} (predicted_at);
                    """
                )
                self._ready = True
            return action(connection)

        return self._log._run(with_schema)

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport:
        report = IngestReport()
        now = utc_now_iso()

        def candidates(connection: sqlite3.Connection, query: str, params: tuple[Any, ...]) -> list[Candidate]:
            return [Candidate(*row) for row in connection.execute(query, params)]

        select = f"SELECT prediction_id, customer_id, model_run_id, prediction, timestamp, source FROM {PREDICTIONS}"

        def ingest(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for outcome in outcomes:
                    report.count(self._one(connection, outcome, now, candidates, select), outcome)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        self._run(ingest)
        return report

    @staticmethod
    def _one(connection: sqlite3.Connection, outcome: Outcome, now: str, candidates: Any, select: str) -> str:
        outcome_id = outcome.outcome_id
        seen = connection.execute(f"SELECT status FROM {OUTCOMES} WHERE outcome_id = ?", (outcome_id,)).fetchone()
        if seen is not None and seen[0] in (SETTLED, DUPLICATE, CONFLICT):
            return DUPLICATE
        by_request = (
            candidates(connection, f"{select} WHERE request_id = ? AND source != 'shadow'", (outcome.request_id,))
            if outcome.request_id is not None
            else []
        )
        latest = None
        if outcome.customer_id is not None and not by_request:
            found = candidates(
                connection,
                f"{select} WHERE customer_id = ? AND timestamp <= ? AND source != 'shadow' "
                "ORDER BY timestamp DESC LIMIT 1",
                (outcome.customer_id, _iso(outcome.observed_at)),
            )
            latest = found[0] if found else None
        chosen = choose(outcome, by_request, latest)
        status: str
        prediction_id: str | None = None
        if isinstance(chosen, str):
            status = chosen
        else:
            prediction_id = chosen.prediction_id
            earlier = connection.execute(
                f"SELECT label FROM {SETTLEMENTS} WHERE prediction_id = ?", (prediction_id,)
            ).fetchone()
            if earlier is not None:
                status = DUPLICATE if earlier[0] == outcome.label else CONFLICT
            else:
                connection.execute(
                    f"INSERT INTO {SETTLEMENTS} (prediction_id, outcome_id, model_run_id, source, prediction, "
                    "predicted_at, label, observed_at, settled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        prediction_id,
                        outcome_id,
                        chosen.model_run_id,
                        chosen.source,
                        chosen.prediction,
                        chosen.timestamp,
                        outcome.label,
                        _iso(outcome.observed_at),
                        now,
                    ),
                )
                status = SETTLED
                # the shadow model's score of the same record (same request id and customer) is settled with it
                twins = candidates(
                    connection,
                    f"{select} WHERE request_id = ? AND source = 'shadow' AND customer_id IS ?",
                    (chosen_request(connection, chosen), chosen.customer_id),
                )
                for twin in twins:
                    connection.execute(
                        f"INSERT OR IGNORE INTO {SETTLEMENTS} (prediction_id, outcome_id, model_run_id, source, "
                        "prediction, predicted_at, label, observed_at, settled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            twin.prediction_id,
                            outcome_id,
                            twin.model_run_id,
                            twin.source,
                            twin.prediction,
                            twin.timestamp,
                            outcome.label,
                            _iso(outcome.observed_at),
                            now,
                        ),
                    )
        connection.execute(
            f"INSERT OR REPLACE INTO {OUTCOMES} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                outcome_id,
                outcome.request_id,
                outcome.customer_id,
                outcome.label,
                _iso(outcome.observed_at),
                now,
                status,
                prediction_id,
            ),
        )
        return status

    def settled(self, model_run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` settlements (of one model run, if given), oldest first."""
        query = f"SELECT * FROM {SETTLEMENTS}"
        params: list[Any] = []
        if model_run_id is not None:
            query += " WHERE model_run_id = ?"
            params.append(model_run_id)
        query += " ORDER BY seq DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        return list(reversed(self._rows(query, params)))

    def settled_between(self, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
        """Settlements of the predictions made in [since, until), oldest prediction first (for reports)."""
        query = f"SELECT * FROM {SETTLEMENTS} WHERE predicted_at >= ?"
        params: list[Any] = [_iso(since)]
        if until is not None:
            query += " AND predicted_at < ?"
            params.append(_iso(until))
        return self._rows(query + " ORDER BY predicted_at, seq", params)

    def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query, params)]

        return self._run(read)

    def run_ids(self) -> list[str]:
        rows = self._run(lambda c: c.execute(f"SELECT DISTINCT model_run_id FROM {SETTLEMENTS}").fetchall())
        return sorted(r[0] for r in rows)

    def settled_inputs(self, limit: int) -> list[tuple[dict[str, Any], int]]:
        """The newest `limit` settled predictions' inputs (the clean records) and labels: what a promotion
        re-scores with both models."""
        import json

        query = (
            f"SELECT p.input, s.label FROM {SETTLEMENTS} s JOIN {PREDICTIONS} p ON p.prediction_id = s.prediction_id "
            "ORDER BY s.seq DESC LIMIT ?"
        )
        rows = self._run(lambda c: c.execute(query, (int(limit),)).fetchall())
        return [(json.loads(text), int(label)) for text, label in reversed(rows)]

    def close(self) -> None:
        return None


def chosen_request(connection: sqlite3.Connection, chosen: Candidate) -> str:
    """The request id of the settled prediction (an outcome by customer does not carry it)."""
    row = connection.execute(f"SELECT request_id FROM {PREDICTIONS} WHERE prediction_id = ?", (chosen.prediction_id,))
    return str(row.fetchone()[0])


# --------------------------------------------------------------------------------------------------- MongoDB
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
            raise _down(self.uri, error) from error

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
                _iso(d["timestamp"]),
                d["source"],
            )
            for d in cursor
        ]

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport:
        report = IngestReport()

        def ingest() -> None:
            for outcome in outcomes:
                report.count(self._one(outcome), outcome)

        self._guard(ingest)
        return report

    def _one(self, outcome: Outcome) -> str:
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
            status = chosen
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
                "observed_at": _iso(outcome.observed_at),
                "settled_at": _iso(now),
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
                "observed_at": _iso(outcome.observed_at),
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

    def settled_between(self, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
        window: dict[str, Any] = {"$gte": _iso(since)}
        if until is not None:
            window["$lt"] = _iso(until)
        return self._guard(
            lambda: list(self._db[SETTLEMENTS].find({"predicted_at": window}, {"_id": 0}).sort([("predicted_at", 1)]))
        )

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

    def close(self) -> None:
        self._client.close()


def open_outcome_store(settings: Settings, **options: Any) -> OutcomeStore:
    """The outcome store beside the prediction log of these settings (same PREDICTION_LOG_URI)."""
    uri = settings.prediction_log_location
    if uri.startswith("sqlite:///"):
        return SQLiteOutcomeStore(uri)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoOutcomeStore(uri, **options)
    raise StoreUnavailable(f"PREDICTION_LOG_URI={uri!r}: expected sqlite:///path or mongodb://host:port/database")
