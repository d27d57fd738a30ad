"""What both paths of the contract share, word for word: the errors, the reasons they give, the id as text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL = "label"  # name of the 0/1 target column in clean frames
FLOAT32_MAX = float(np.finfo(np.float32).max)
NOT_FINITE = "must be a finite number (NaN and infinity are not allowed)"
FLOAT32_RANGE = "must be a number within the 32-bit float range"
REQUIRED = "is required by the spec; got a missing value"
ABSENT_REQUIRED = "missing field (required by the spec)"
NO_FEATURE = "holds none of the spec's features: is it a record of this data set?"
MAX_ID_CHARS = 128  # a customer id, a request id: bounded, and said so in the OpenAPI document


class DataError(ValueError):
    """The data does not fit the spec; the message names the column (and the row, where one is at fault).

    `field` and `reason` are the same words a record with the same value gets from `RecordError`.
    """

    def __init__(self, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


@dataclass(eq=False)  # not frozen: Python sets __traceback__ on exceptions it raises through `with` blocks
class RecordError(ValueError):
    """One bad field of one record: `field` names it, `reason` says what is wrong."""

    field: str
    reason: str
    index: int | None = None  # position in a batch

    def __str__(self) -> str:
        where = f"record {self.index}: " if self.index is not None else ""
        return f"{where}field '{self.field}': {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


def json_type(value: Any) -> str:
    """How a JSON client names what it sent: `string "abc"`, `array [1]`, `null` (abbreviated)."""
    if value is None:
        return "null"
    names = {str: "string", bool: "boolean", list: "array", dict: "object"}
    name = names.get(type(value), "number" if isinstance(value, int | float) else type(value).__name__)
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    return f"{name} {shown[:40]}"


def not_a_number(value: Any) -> str:
    return f"must be a number, got {json_type(value)}"


def below(low: float, value: Any) -> str:
    return f"must be >= {low:g}, got {shown(value)}"


def above(high: float, value: Any) -> str:
    return f"must be <= {high:g}, got {shown(value)}"


def not_whole(value: Any) -> str:
    return f"must be a whole number, got {shown(value)}"


def unknown_category(value: Any, allowed: list[str]) -> str:
    return f"unknown category {value!r}; expected one of {allowed}"


def ordinal_code_range(value: Any, start: int, order: list[str]) -> str:
    return f"unknown ordinal code {value!r}; expected {start}..{start + len(order) - 1} for {order}"


def shown(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def id_text(identifier: Any) -> str:
    """Ids are text everywhere (a CSV column of digits reads as numbers): 768805383.0 -> "768805383"."""
    if isinstance(identifier, float) and identifier.is_integer():
        return str(int(identifier))
    return str(identifier)


def customer_id(value: Any) -> str:
    """A customer id as text (a string, or a whole number), or ValueError with the reason: every entry point (a
    record, an outcome, a Kinesis envelope, a URL) holds ids to the same bound and the same text rule."""
    from mlops.contract.text import text_problem

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a string or an integer, got {json_type(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"must be a whole number or a string, got {json_type(value)}")
    text = value if isinstance(value, str) else id_text(value)
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"must be at most {MAX_ID_CHARS} characters, got {len(text)}")
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text
