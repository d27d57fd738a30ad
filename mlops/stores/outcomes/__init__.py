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

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from mlops.outcomes import Outcome
from mlops.settings import Settings
from mlops.stores.base import StoreUnavailable
from mlops.stores.outcomes.mongo import MongoOutcomeStore
from mlops.stores.outcomes.report import Candidate, IngestReport, OutcomeStore, choose
from mlops.stores.outcomes.sqlite import SQLiteOutcomeStore
from mlops.stores.quarantine import Quarantine, keep_refused, quarantine_dir, write_isolating

log = logging.getLogger(__name__)

__all__ = [
    "Candidate",
    "IngestReport",
    "MongoOutcomeStore",
    "OutcomeStore",
    "SQLiteOutcomeStore",
    "choose",
    "ingest_isolating",
    "open_outcome_store",
]


def open_outcome_store(settings: Settings, **options: Any) -> OutcomeStore:
    """The outcome store beside the prediction log of these settings (same PREDICTION_LOG_URI)."""
    uri = settings.prediction_log_location
    if uri.startswith("sqlite:///"):
        return SQLiteOutcomeStore(uri)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoOutcomeStore(uri, **options)
    raise StoreUnavailable(f"PREDICTION_LOG_URI={uri!r}: expected sqlite:///path or mongodb://host:port/database")


def ingest_isolating(store: OutcomeStore, outcomes: Sequence[Outcome], settings: Settings) -> IngestReport:
    """`store.ingest`, where outcomes the store refuses for their content (not an outage: StoreUnavailable is
    raised) are bisected out and quarantined under STATE_DIR/quarantine/outcomes, counted as `refused`, while the
    rest is ingested. Ingesting an outcome twice counts it once, so retrying a half is safe."""
    by_position = list(outcomes)
    try:
        return store.ingest(by_position)  # the usual case, one call; an outage (StoreUnavailable) is raised as is
    except StoreUnavailable:
        raise
    except Exception:
        log.warning("the outcome store refused a batch of %d outcome(s); isolating the refused", len(by_position))
    report = IngestReport()

    def ingest(part: list[dict[str, Any]]) -> None:
        report.merge(store.ingest([by_position[entry["position"]] for entry in part]))

    entries = [{"position": i, **_as_dict(o)} for i, o in enumerate(by_position)]
    refused, unwritten = write_isolating(ingest, entries)
    if unwritten:
        raise StoreUnavailable(
            f"the outcome store (PREDICTION_LOG_URI) went down with {len(unwritten)} outcome(s) not stored"
        )
    if refused:
        quarantine = Quarantine(quarantine_dir(settings.state_dir, "outcomes"), settings.quarantine_max_bytes)
        keep_refused(quarantine, refused, log, "outcome(s)")
        report.refused += len(refused)
        report.received += len(refused)
    return report


def _as_dict(outcome: Outcome) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dataclasses.asdict(outcome).items()}
