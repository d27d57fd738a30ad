"""Outcomes and settlements in the prediction log's SQLite file: one transaction per call, the join a query."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mlops.outcomes import Outcome
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
from mlops.stores.prediction_log.entry import PREDICTIONS, SOURCES
from mlops.stores.prediction_log.sqlite_rows import COLUMNS, Codec, create_schema, latest_for_customer, pack_id
from mlops.stores.sqlite_file import SQLiteFile, in_transaction


def create_outcome_schema(connection: sqlite3.Connection) -> None:
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
        CREATE INDEX IF NOT EXISTS {OUTCOMES}_received ON {OUTCOMES} (received_at);
        CREATE TABLE IF NOT EXISTS {ARCHIVE_STATE} (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )


class SQLiteOutcomeStore:
    """Tables `outcomes` and `settlements` in the prediction log's SQLite file; one transaction per call."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        # the prediction log's file: its predictions table (and indexes) first, then ours
        self.file = SQLiteFile(uri, [create_schema, create_outcome_schema], "outcome store", "PREDICTION_LOG_URI")
        self.codec = Codec()

    def _run(self, action: Callable[[sqlite3.Connection], Any]) -> Any:
        return self.file.run(action)

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport:
        report = IngestReport()
        now = utc_now_iso()

        def ingest(connection: sqlite3.Connection) -> None:
            report.archived_before = archived_before(connection)
            for outcome in outcomes:
                report.count(self._one(connection, outcome, now, report.archived_before), outcome)

        self._run(lambda c: in_transaction(c, ingest))
        return report

    def _candidate(self, connection: sqlite3.Connection, row: Sequence[Any]) -> Candidate:
        entry = self.codec.entry(connection, row)
        return Candidate(
            entry["prediction_id"],
            entry["customer_id"],
            entry["model_run_id"],
            entry["prediction"],
            iso(entry["timestamp"]),
            entry["source"],
        )

    def _by_request(self, connection: sqlite3.Connection, request_id: str, shadow: bool) -> list[Candidate]:
        query = f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE request_id = ? AND (source = ?) = ? ORDER BY seq"
        rows = connection.execute(query, (pack_id(request_id), SHADOW, shadow))
        return [self._candidate(connection, row) for row in rows]

    def _one(self, connection: sqlite3.Connection, outcome: Outcome, now: str, archived: str | None) -> str:
        outcome_id = outcome.outcome_id
        seen = connection.execute(f"SELECT status FROM {OUTCOMES} WHERE outcome_id = ?", (outcome_id,)).fetchone()
        if seen is not None and seen[0] in (SETTLED, DUPLICATE, CONFLICT):
            return DUPLICATE
        by_request = (
            self._by_request(connection, outcome.request_id, shadow=False) if outcome.request_id is not None else []
        )
        latest = None
        if outcome.customer_id is not None and not by_request:
            row = latest_for_customer(connection, outcome.customer_id, outcome.observed_at)
            latest = self._candidate(connection, row) if row is not None else None
        chosen = choose(outcome, by_request, latest)
        status: str
        prediction_id: str | None = None
        if isinstance(chosen, str):
            status = unmatched(outcome, archived) if chosen == UNKNOWN else chosen
        else:
            prediction_id = chosen.prediction_id
            earlier = connection.execute(
                f"SELECT label FROM {SETTLEMENTS} WHERE prediction_id = ?", (prediction_id,)
            ).fetchone()
            if earlier is not None:
                status = DUPLICATE if earlier[0] == outcome.label else CONFLICT
            else:
                # the shadow model's score of the same record (same request id and customer) is settled with it
                twins = [
                    t
                    for t in self._by_request(connection, chosen_request(connection, chosen), shadow=True)
                    if t.customer_id == chosen.customer_id
                ]
                connection.executemany(
                    f"INSERT OR IGNORE INTO {SETTLEMENTS} (prediction_id, outcome_id, model_run_id, source, "
                    "prediction, predicted_at, label, observed_at, settled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            c.prediction_id,
                            outcome_id,
                            c.model_run_id,
                            c.source,
                            c.prediction,
                            c.timestamp,
                            outcome.label,
                            iso(outcome.observed_at),
                            now,
                        )
                        for c in (chosen, *twins)
                    ],
                )
                status = SETTLED
        connection.execute(
            f"INSERT OR REPLACE INTO {OUTCOMES} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                outcome_id,
                outcome.request_id,
                outcome.customer_id,
                outcome.label,
                iso(outcome.observed_at),
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

    def settled_between(
        self, since: datetime, until: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Settlements of the predictions made in [since, until), the newest `limit` of them (indexed), oldest
        prediction first (for reports)."""
        query = f"SELECT * FROM {SETTLEMENTS} WHERE predicted_at >= ?"
        params: list[Any] = [iso(since)]
        if until is not None:
            query += " AND predicted_at < ?"
            params.append(iso(until))
        query += " ORDER BY predicted_at DESC, seq DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        return list(reversed(self._rows(query, params)))

    def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query, params)]

        return self._run(read)

    def run_ids(self) -> list[str]:
        rows = self._run(lambda c: c.execute(f"SELECT DISTINCT model_run_id FROM {SETTLEMENTS}").fetchall())
        return sorted(r[0] for r in rows)

    def _logged(self, connection: sqlite3.Connection, prediction_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The logged entries of these prediction ids (an archived one is absent)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(prediction_ids), 500):
            chunk = [pack_id(p) for p in prediction_ids[start : start + 500]]
            query = f"SELECT {COLUMNS} FROM {PREDICTIONS} WHERE prediction_id IN ({','.join('?' * len(chunk))})"
            for row in connection.execute(query, chunk):
                entry = self.codec.entry(connection, row)
                found[entry["prediction_id"]] = entry
        return found

    def _settled_with_entries(self, limit: int, live_only: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The newest `limit` settlements whose prediction is still logged, each with its entry, oldest first."""
        where = " WHERE source != 'shadow'" if live_only else ""
        query = f"SELECT prediction_id, label, predicted_at FROM {SETTLEMENTS}{where} ORDER BY seq DESC LIMIT ?"

        def read(connection: sqlite3.Connection) -> list[tuple[dict[str, Any], dict[str, Any]]]:
            settled = connection.execute(query, (int(limit),)).fetchall()
            logged = self._logged(connection, [p for p, _, _ in settled])
            pairs = [({"label": label, "predicted_at": at}, logged[p]) for p, label, at in settled if p in logged]
            return list(reversed(pairs))

        return self._run(read)

    def settled_inputs(self, limit: int) -> list[tuple[dict[str, Any], int]]:
        """The newest `limit` settled predictions' inputs (the clean records) and labels: what a promotion
        re-scores with both models."""
        return [(entry["input"], int(s["label"])) for s, entry in self._settled_with_entries(limit, live_only=False)]

    def settled_records(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` settled live predictions with what a training row needs: input, label, customer id
        and when it was predicted (mlops.production_data)."""
        return [
            {
                "input": entry["input"],
                "label": int(s["label"]),
                "customer_id": entry["customer_id"],
                "predicted_at": s["predicted_at"],
            }
            for s, entry in self._settled_with_entries(limit, live_only=True)
        ]

    def close(self) -> None:
        return None


def chosen_request(connection: sqlite3.Connection, chosen: Candidate) -> str:
    """The request id of the settled prediction (an outcome by customer does not carry it)."""
    query = f"SELECT request_id FROM {PREDICTIONS} WHERE prediction_id = ?"
    value = connection.execute(query, (pack_id(chosen.prediction_id),)).fetchone()[0]
    return value.hex() if isinstance(value, bytes) else str(value)


SHADOW = SOURCES.index("shadow")


def archived_before(connection: sqlite3.Connection) -> str | None:
    """The archive's horizon (mlops.archive): rows logged before it were archived to S3 and deleted."""
    row = connection.execute(f"SELECT value FROM {ARCHIVE_STATE} WHERE name = 'archived_before'").fetchone()
    return row[0] if row else None
