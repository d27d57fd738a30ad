"""The record path of the contract: the spec compiled once into plain lookups (a request costs dict lookups, not
spec traversals); used by the HTTP API, the Kinesis consumer, the drift service and the pyfunc."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

from mlops.contract.rules import (
    ABSENT_REQUIRED,
    FLOAT32_MAX,
    FLOAT32_RANGE,
    MAX_ID_CHARS,
    NO_FEATURE,
    NOT_FINITE,
    REQUIRED,
    RecordError,
    above,
    below,
    customer_id,
    json_type,
    not_a_number,
    not_whole,
    ordinal_code_range,
    unknown_category,
)
from mlops.contract.text import text_problem
from mlops.spec import FeatureSpec, normalize_name


class RecordValidator:
    """The spec compiled into lookups; `__call__` checks one record and returns it clean (normalized names)."""

    def __init__(self, spec: FeatureSpec, allow_unknown: bool = False) -> None:
        self.spec = spec
        self.allow_unknown = allow_unknown
        self.expected = spec.feature_columns
        self.expected_set = frozenset(self.expected)
        self.id_column = spec.id_column
        self.ignored = frozenset([*spec.drop, spec.target.column])
        self.known = self.expected_set | self.ignored | ({spec.id_column} if spec.id_column else frozenset())
        self.required = frozenset(spec.required)
        self.missing_markers = {v.lower() for v in spec.missing_values}
        self.numeric = [(c, f.type == "int", f.min, f.max, c in self.required) for c, f in spec.numeric.items()]
        self.categories = [
            (c, spec.categories(c), {v.lower(): v for v in spec.categories(c)}, c in self.required, c in spec.ordinal)
            for c in [*spec.categorical, *spec.ordinal]
        ]
        self._names: dict[str, str] = {}  # raw spelling -> normalized, learned as records come

    def _normalized(self, record: Mapping[Any, Any], index: int | None) -> dict[str, Any]:
        """Names in any spelling -> the spec's; ignored columns dropped; unknown and twice-given fields refused."""
        out: dict[str, Any] = {}
        for key, value in record.items():
            name = self._names.get(key) if isinstance(key, str) else None
            if name is None:
                name = normalize_name(key)
                if isinstance(key, str) and len(self._names) < 4096:
                    self._names[key] = name
            if name in self.ignored:
                continue
            if name not in self.known:
                if self.allow_unknown:
                    continue
                raise RecordError(str(key), f"unknown field; expected fields are {self.expected}", index)
            if name in out:
                raise RecordError(str(key), "given twice (names are compared case-insensitively)", index)
            out[name] = value
        absent = [c for c in self.expected if c not in out]
        if absent:
            for column in absent:  # an absent feature is a missing value, like null, unless the spec requires it
                if column in self.required:
                    raise RecordError(column, ABSENT_REQUIRED, index)
                out[column] = None
            if len(absent) == len(self.expected):
                raise RecordError("(record)", NO_FEATURE, index)
        return out

    def __call__(self, record: Any, index: int | None = None) -> dict[str, Any]:
        if not isinstance(record, Mapping):
            raise RecordError("(record)", f"must be a JSON object, got {json_type(record)}", index)
        if record.keys() != self.expected_set:
            record = self._normalized(record, index)
        clean: dict[str, Any] = {}
        for column, whole, low, high, required in self.numeric:
            value = record[column]
            kind = type(value)
            if kind is not int and kind is not float:
                value = self._number_from(column, value, required, index)
                if value is None:
                    clean[column] = None
                    continue
            elif kind is float and not math.isfinite(value):
                raise RecordError(column, NOT_FINITE, index)
            if whole and kind is not int and value != int(value):
                raise RecordError(column, not_whole(value), index)
            if low is not None and value < low:
                raise RecordError(column, below(low, value), index)
            if high is not None and value > high:
                raise RecordError(column, above(high, value), index)
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise RecordError(column, FLOAT32_RANGE, index)
            clean[column] = value
        for column, allowed, canonical, required, ordinal in self.categories:
            value = record[column]
            if value is None:
                if required:
                    raise RecordError(column, REQUIRED, index)
                clean[column] = None
                continue
            if type(value) is not str:
                coded = self.spec.ordinal_code(column, value) if ordinal else None
                if coded is not None:
                    clean[column] = coded
                    continue
                if ordinal and type(value) in (int, float):
                    raise RecordError(column, self._code_range(column, value), index)
                kinds = "a string, an integer code or null" if ordinal else "a string or null"
                raise RecordError(column, f"must be {kinds}, got {json_type(value)}", index)
            spelled = canonical.get(value.lower()) if value == value.strip() else None
            if spelled is None:
                key = value.strip().lower()
                if key in self.missing_markers or key == "":
                    if required:
                        raise RecordError(column, REQUIRED, index)
                    clean[column] = None
                    continue
                spelled = canonical.get(key) or (self.spec.ordinal_code(column, key) if ordinal else None)
                if spelled is None:
                    raise RecordError(column, unknown_category(value, allowed), index)
            clean[column] = spelled
        if self.id_column is not None:
            identifier = record.get(self.id_column)
            if identifier is not None:
                if type(identifier) is str and len(identifier) <= MAX_ID_CHARS and text_problem(identifier) is None:
                    clean[self.id_column] = identifier
                else:
                    try:
                        clean[self.id_column] = customer_id(identifier)
                    except ValueError as error:
                        raise RecordError(self.id_column, str(error), index) from None
        return clean

    def _code_range(self, column: str, value: Any) -> str:
        return ordinal_code_range(value, self.spec.ordinal_codes_start, self.spec.ordinal[column])

    def _number_from(self, column: str, value: Any, required: bool, index: int | None) -> float | int | None:
        """A number from anything but an int or a float: a numeric string, or None for a missing value."""
        if value is None:
            if required:
                raise RecordError(column, REQUIRED, index)
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RecordError(column, not_a_number(value), index)
        if not isinstance(value, str):  # an int or float subclass (numpy scalars)
            number = float(value)
        else:
            text = value.strip()
            if text == "" or text.lower() in self.missing_markers:
                if required:
                    raise RecordError(column, REQUIRED, index)
                return None
            try:
                if "_" in text:  # Python reads "1_000"; CSV readers and pandas do not
                    raise ValueError(text)
                number = float(text)
            except ValueError:
                raise RecordError(column, not_a_number(value), index) from None
        if not math.isfinite(number):
            raise RecordError(column, NOT_FINITE, index)
        return number


_VALIDATORS: dict[tuple[int, bool], RecordValidator] = {}
_VALIDATORS_LOCK = threading.Lock()


def validator_for(spec: FeatureSpec, allow_unknown: bool = False) -> RecordValidator:
    """A compiled validator per spec object (it keeps the spec alive, so the id is never reused)."""
    found = _VALIDATORS.get((id(spec), allow_unknown))
    if found is not None and found.spec is spec:
        return found
    with _VALIDATORS_LOCK:
        if len(_VALIDATORS) > 64:
            _VALIDATORS.clear()
        compiled = _VALIDATORS[(id(spec), allow_unknown)] = RecordValidator(spec, allow_unknown)
    return compiled


def validate_record(
    record: Any, spec: FeatureSpec, index: int | None = None, allow_unknown: bool = False
) -> dict[str, Any]:
    """Check one record against the spec; returns it clean (normalized names, canonical categories, id as text)."""
    return validator_for(spec, allow_unknown)(record, index)
