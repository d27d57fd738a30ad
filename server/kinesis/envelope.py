"""The Kinesis input envelope: what a record's Data must be, parsed in one place (UTF-8 JSON).

    {"request_id": "<1-256 chars, or an integer>", "record": {<one record as POST /predict takes it>}}
    {<one record>}                                    a bare record: request id `<shard id>:<sequence number>`
    {"request_id": "...", "customer_id": "..."}       score the customer's features from the online store

Any envelope may add "explain": k (a whole number, or "all"): the result then carries the k top reasons
(mlops.explain).

The shape of the original design is also accepted: {"customer_id": ..., "customer": {...}}, with customer_id as the
request id. A record that cannot be parsed raises EnvelopeError naming the field; the consumer dead-letters it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from mlops.contract.rules import customer_id
from mlops.contract.text import TextError, loads_text
from mlops.explain import ExplainError, explain_count

MAX_PARTITION_KEY = 256  # Kinesis' limit on a partition key, which the request id becomes
ENVELOPES = (
    ("request_id", "record"),
    ("customer_id", "customer"),
)  # (id key, record key), first is the documented
EXPLAIN_KEY = "explain"
CUSTOMER_KEY = "customer_id"  # with "request_id" and no record: the customer's features from the online store


@dataclass(frozen=True)
class Envelope:
    request_id: str
    record: Any
    customer_id: str | None = None  # {"request_id", "customer_id"} and no record: score from the online store
    explain: int = 0  # how many reasons the result carries (mlops.explain)


@dataclass(frozen=True)
class EnvelopeError(ValueError):
    """The record cannot be scored: `field` names what is wrong; `request_id` is kept if it was read."""

    field: str
    reason: str
    request_id: str | None = None
    kind: str = "envelope"  # or "text": the dead-letter metric's reason

    def __str__(self) -> str:
        return f"field '{self.field}': {self.reason}"


def parse_envelope(data: bytes, derived_id: str | None = None) -> Envelope:
    """Decode one Kinesis record's Data into (request id, record); raise EnvelopeError saying why not.

    `derived_id` (the consumer passes `<shard id>:<sequence number>`: the same on every read of the record, so a
    replay after a crash logs the same prediction and an outcome settles it once) is the request id of a bare
    record (Data that is a record, as `aws kinesis put-record` of the original design sends it) and of an
    envelope without one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EnvelopeError("(data)", f"not UTF-8 text: {error.reason} at byte {error.start}") from error
    try:
        body = loads_text(data)
    except RecursionError:
        raise EnvelopeError("(data)", "not JSON this consumer takes: nested too deeply") from None
    except TextError as error:
        raise EnvelopeError(error.field, error.reason, kind="text") from None
    except json.JSONDecodeError as error:
        raise EnvelopeError("(data)", f"not JSON: {error.msg} at character {error.pos}") from error
    except ValueError as error:
        raise EnvelopeError("(data)", f"not JSON: {error}") from error
    if not isinstance(body, dict):
        raise EnvelopeError("(envelope)", f"must be a JSON object, got {type(body).__name__}")
    for id_key, record_key in ENVELOPES:
        if id_key in body or record_key in body:
            break
    else:
        if derived_id is not None:
            return Envelope(derived_id, body)  # a bare record
        raise EnvelopeError(
            "request_id",
            'missing; expected {"request_id": "...", "record": {...}} (or "customer_id"/"customer")',
        )
    by_id = id_key == "request_id" and CUSTOMER_KEY in body and record_key not in body
    allowed = {id_key, CUSTOMER_KEY, EXPLAIN_KEY} if by_id else {id_key, record_key, EXPLAIN_KEY}
    unknown = sorted(set(body) - allowed)
    if unknown:
        expected = f"'{id_key}' and '{record_key}' (or '{CUSTOMER_KEY}' instead of '{record_key}'), and '{EXPLAIN_KEY}'"
        raise EnvelopeError(unknown[0], f"unknown envelope field; expected only {expected}")
    request_id = (
        _request_id(body.get(id_key), id_key) if body.get(id_key) is not None or derived_id is None else derived_id
    )
    try:
        explain = explain_count(body.get(EXPLAIN_KEY))
    except ExplainError as error:
        raise EnvelopeError(EXPLAIN_KEY, str(error), request_id) from None
    if by_id:
        return Envelope(request_id, None, _customer_id(body[CUSTOMER_KEY], request_id), explain)
    if record_key not in body:
        raise EnvelopeError(
            record_key, f"missing (or send '{CUSTOMER_KEY}' to score from the online store)", request_id
        )
    return Envelope(request_id, body[record_key], explain=explain)


def _customer_id(value: Any, request_id: str) -> str:
    try:
        text = customer_id(value).strip()
    except ValueError as error:
        raise EnvelopeError(CUSTOMER_KEY, str(error), request_id) from None
    if not text:
        raise EnvelopeError(CUSTOMER_KEY, "must be a non-empty string or an integer", request_id)
    return text


def _request_id(value: Any, key: str) -> str:
    if value is None:
        raise EnvelopeError(key, "missing (every record needs a request id: it keys the result)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EnvelopeError(key, f"must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise EnvelopeError(key, "must not be empty")
    if len(text) > MAX_PARTITION_KEY:
        raise EnvelopeError(key, f"must be at most {MAX_PARTITION_KEY} characters (it is the partition key)")
    return text


def raw_text(data: bytes) -> tuple[str, str]:
    """The raw Data for a dead letter: (text, "utf-8") when it decodes, else (base64, "base64")."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
