"""The outcome contract: what a valid observed outcome ("did this customer leave?") is, for every way one comes in.

An outcome settles an earlier prediction. It names that prediction by `request_id` (the X-Request-ID of the HTTP
call, the `request_id` of the Kinesis envelope), or the customer by the spec's id column, or both (needed for one
record of an HTTP batch, whose records share a request id). Its label is spelled as the data set spells it
(`Attrited Customer` / `Existing Customer`, case-insensitively), under `label` or the spec's target column name.
`observed_at` (alias `date`) is an ISO 8601 date or time, UTC when it has no offset; default: when it arrived.

`POST /outcomes` (records) and `make outcomes FILE=...` (frames: one record per row, so a file row and a JSON record
get the same verdict and the same reason) both call `outcome_from_record`. Column names go through the spec's
normalization, as feature names do; a field this contract does not name is refused, naming it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mlops.contract import DataError, RecordError, json_type
from mlops.contract.rules import MAX_ID_CHARS, customer_id
from mlops.spec import FeatureSpec, normalize_name

REQUEST_ID = "request_id"
LABEL_FIELD = "label"
OBSERVED_AT = "observed_at"
OBSERVED_ALIASES = ("observed_at", "date", "observed")
REQUEST_ID_PATTERN = rf"^[A-Za-z0-9._:\-]{{1,{MAX_ID_CHARS}}}$"  # X-Request-ID, an envelope's, a V2 request's id
SANE_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
FUTURE_TOLERANCE = timedelta(minutes=5)  # clocks of the sender and the server differ a little


@dataclass(frozen=True)
class Outcome:
    """One observed label, clean: which prediction it settles (request id and/or customer id) and when."""

    request_id: str | None
    customer_id: str | None
    label: int  # 1 = the spec's positive label
    observed_at: datetime  # aware, UTC

    @property
    def outcome_id(self) -> str:
        """Same outcome sent twice -> same id (what makes ingestion idempotent)."""
        key = f"{self.request_id or ''}\x1f{self.customer_id or ''}\x1f{self.label}\x1f{self.observed_at.isoformat()}"
        return hashlib.sha1(key.encode()).hexdigest()

    @property
    def key(self) -> str:
        """How a person names this outcome in a report of unknown ones."""
        if self.request_id and self.customer_id:
            return f"request_id={self.request_id} customer={self.customer_id}"
        return f"request_id={self.request_id}" if self.request_id else f"customer={self.customer_id}"


class OutcomeContract:
    """The rules of one spec compiled once: field names, label spellings."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.id_column = spec.id_column
        self.target = spec.target.column
        self.positive = spec.target.positive.lower()
        self.negative = spec.target.negative.lower() if spec.target.negative is not None else None
        names = {REQUEST_ID: REQUEST_ID, LABEL_FIELD: LABEL_FIELD, self.target: LABEL_FIELD}
        names.update({alias: OBSERVED_AT for alias in OBSERVED_ALIASES})
        if self.id_column:
            names[self.id_column] = self.id_column
        self.names = names
        self.expected = [REQUEST_ID, *([self.id_column] if self.id_column else []), LABEL_FIELD, OBSERVED_AT]

    def labels_text(self) -> str:
        if self.spec.target.negative is None:
            return f"{self.spec.target.positive!r} or any other label (negative)"
        return f"{self.spec.target.positive!r} or {self.spec.target.negative!r}"

    def __call__(self, record: Any, index: int | None = None, now: datetime | None = None) -> Outcome:
        if not isinstance(record, Mapping):
            raise RecordError("(record)", f"must be a JSON object, got {json_type(record)}", index)
        fields: dict[str, tuple[str, Any]] = {}
        for key, value in record.items():
            name = self.names.get(normalize_name(key))
            if name is None:
                raise RecordError(str(key), f"unknown field; expected fields are {self.expected}", index)
            if name in fields:
                raise RecordError(str(key), f"given twice (as {fields[name][0]!r} too)", index)
            fields[name] = (str(key), value)
        request_id = self._request_id(fields.get(REQUEST_ID), index)
        customer_id = self._customer_id(fields.get(self.id_column) if self.id_column else None, index)
        if request_id is None and customer_id is None:
            names = f"'{REQUEST_ID}'" + (f" or '{self.id_column}'" if self.id_column else "")
            raise RecordError(REQUEST_ID, f"missing; an outcome names its prediction by {names}", index)
        label = self._label(fields.get(LABEL_FIELD), index)
        observed = self._observed_at(fields.get(OBSERVED_AT), index, now or datetime.now(UTC))
        return Outcome(request_id, customer_id, label, observed)

    # ------------------------------------------------------------------ one field each
    @staticmethod
    def _request_id(given: tuple[str, Any] | None, index: int | None) -> str | None:
        if given is None or _absent(given[1]):
            return None
        key, value = given
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RecordError(key, f"must be a string or an integer, got {json_type(value)}", index)
        text = str(value).strip()
        if not SANE_REQUEST_ID.match(text):
            raise RecordError(key, f"must be 1-{MAX_ID_CHARS} characters of letters, digits and . _ : -", index)
        return text

    @staticmethod
    def _customer_id(given: tuple[str, Any] | None, index: int | None) -> str | None:
        if given is None or _absent(given[1]):
            return None
        key, value = given
        try:
            return customer_id(value).strip()
        except ValueError as error:
            raise RecordError(key, str(error), index) from None

    def _label(self, given: tuple[str, Any] | None, index: int | None) -> int:
        if given is None or _absent(given[1]):
            raise RecordError(LABEL_FIELD, f"missing; expected {self.labels_text()}", index)
        key, value = given
        if not isinstance(value, str):
            raise RecordError(key, f"must be the label as text ({self.labels_text()}), got {json_type(value)}", index)
        lowered = value.strip().lower()
        if lowered == self.positive:
            return 1
        if self.negative is None or lowered == self.negative:
            return 0
        raise RecordError(key, f"unknown target label {value!r}; expected {self.labels_text()}", index)

    @staticmethod
    def _observed_at(given: tuple[str, Any] | None, index: int | None, now: datetime) -> datetime:
        if given is None or _absent(given[1]):
            return now
        key, value = given
        if isinstance(value, datetime | pd.Timestamp):
            moment = pd.Timestamp(value).to_pydatetime()
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise RecordError(
                    key, f"must be an ISO 8601 date or time (2026-11-30, 2026-11-30T09:00:00Z), got {value!r}", index
                ) from None
        else:
            raise RecordError(key, f"must be an ISO 8601 date or time as text, got {json_type(value)}", index)
        try:
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:  # "0001-01-01T00:00+01:00" has no UTC time
            raise RecordError(key, f"is out of the representable range, got {value!r}", index) from None
        if moment > now + FUTURE_TOLERANCE:
            raise RecordError(
                key, f"is in the future ({moment.isoformat()}); an outcome is observed, not expected", index
            )
        return moment


def _absent(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


_CONTRACTS: dict[int, OutcomeContract] = {}


def contract_for(spec: FeatureSpec) -> OutcomeContract:
    found = _CONTRACTS.get(id(spec))
    if found is None or found.spec is not spec:
        if len(_CONTRACTS) > 64:
            _CONTRACTS.clear()
        found = _CONTRACTS[id(spec)] = OutcomeContract(spec)
    return found


def outcome_from_record(record: Any, spec: FeatureSpec, index: int | None = None) -> Outcome:
    """One outcome record (JSON object or file row) -> Outcome; RecordError names the field and the reason."""
    return contract_for(spec)(record, index)


def outcomes_from_frame(frame: pd.DataFrame, spec: FeatureSpec) -> list[Outcome]:
    """A file of outcomes (id, label[, date]; any spelling of the names) -> Outcomes, every row by the record rules.

    The first bad row stops it with the training data's wording: `column 'x', row N: reason` (N = the CSV line).
    """
    if frame.empty:
        raise DataError("the outcomes file has no rows")
    contract = contract_for(spec)
    names = {c: normalize_name(c) for c in frame.columns}
    mapped = [contract.names.get(n) for n in names.values()]
    if LABEL_FIELD not in mapped:
        raise DataError(
            f"missing column: the label ('{LABEL_FIELD}' or '{spec.target.column}'); got {list(frame.columns)}",
            field=LABEL_FIELD,
            reason="missing field",
        )
    now = datetime.now(UTC)
    out: list[Outcome] = []
    columns = list(frame.columns)
    for position, row in enumerate(frame.itertuples(index=False, name=None)):
        try:
            out.append(contract(dict(zip(columns, row, strict=True)), None, now))
        except RecordError as error:
            raise DataError(
                f"column '{error.field}', row {position + 2}: {error.reason}", field=error.field, reason=error.reason
            ) from None
    return out


def read_outcomes_file(path: str, spec: FeatureSpec) -> list[Outcome]:
    """A CSV (or Parquet) export of outcomes -> Outcomes. Ids stay text (read as strings, not numbers)."""
    try:
        if str(path).endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except Exception as error:  # any bytes at all: pandas, pyarrow and the codecs raise many kinds
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    return outcomes_from_frame(frame, spec)
