"""What one ingest call did, and the join rule that decides which prediction an outcome settles (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mlops.outcomes import Outcome
from mlops.stores.ids import iso

OUTCOMES = "outcomes"
SETTLEMENTS = "settlements"
MAX_LISTED = 20  # unknown / ambiguous keys named in an answer

SETTLED, DUPLICATE, UNKNOWN, AMBIGUOUS, CONFLICT = "settled", "duplicate", "unknown", "ambiguous", "conflict"
# not in the log because the archive took it: observed before the archive's horizon (mlops.archive)
ARCHIVED = "archived"
ARCHIVE_STATE = "archive_state"  # one value per name, beside the tables: `archived_before` (ISO time)


@dataclass
class IngestReport:
    """What happened to each outcome of one call; `unknown_keys` names the first few not matched.

    `archived`: outcomes observed before `archived_before`, the horizon up to which the log's predictions were
    archived to S3 and deleted (their prediction, if any, is in the archive). With an archive, `archived_before`
    is in every answer, so an unknown outcome observed later but about an older prediction has its reason too."""

    received: int = 0
    settled: int = 0
    duplicates: int = 0
    unknown: int = 0
    ambiguous: int = 0
    conflicts: int = 0
    refused: int = 0  # refused by the store for their content: quarantined (mlops.stores.quarantine)
    archived: int = 0
    archived_before: str | None = None
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
        elif status == ARCHIVED:
            self.archived += 1
        elif status == AMBIGUOUS:
            self.ambiguous += 1
            if len(self.ambiguous_keys) < MAX_LISTED:
                self.ambiguous_keys.append(outcome.key)

    def merge(self, other: IngestReport) -> None:
        for name in ("received", "settled", "duplicates", "unknown", "ambiguous", "conflicts", "refused", "archived"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.archived_before = other.archived_before or self.archived_before
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


def unmatched(outcome: Outcome, archived_before: str | None) -> str:
    """UNKNOWN, or ARCHIVED when the outcome was observed before the archive's horizon: the prediction it would
    settle was made earlier still, so it is in the archive (or never was), not late in the log."""
    if archived_before is not None and iso(outcome.observed_at) < archived_before:
        return ARCHIVED
    return UNKNOWN


class OutcomeStore(Protocol):
    uri: str

    def ingest(self, outcomes: Sequence[Outcome]) -> IngestReport: ...

    def settled(self, model_run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]: ...

    def settled_between(
        self, since: datetime, until: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    def run_ids(self) -> list[str]: ...

    def settled_inputs(self, limit: int) -> list[tuple[dict[str, Any], int]]: ...

    def settled_records(self, limit: int) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...
