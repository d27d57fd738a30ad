"""The record contract: what a valid record of a data set is, decided once for every entry point.

Training data and batch files come in as frames (`clean`), the HTTP API, the Kinesis consumer and the drift service
get records (`RecordValidator`); the pyfunc cleans frames. Both paths apply the same rules from the spec, word for
word the same reasons:

- column names in any spelling (`Customer_Age`, `customer age`): the spec's normalization;
- the id column is kept (and echoed by every answer); the spec's `drop` columns and the target are ignored;
- a field named nowhere in the spec is refused, naming it (`allow_unknown` relaxes that);
- a missing value (null, "", or one of the spec's missing markers) is accepted for any feature unless the spec lists
  it under `required`; XGBoost routes missing values natively;
- numbers may come as numeric strings (as in CSV files); anything else is refused with the field and the value;
  NaN and infinity are refused; `int` features must be whole; `min` / `max` bounds hold in training and serving;
- categories match case-insensitively and come out in the spec's spelling; an unseen one is refused.

The record path is compiled once per spec into plain lookups (a request costs dict lookups, not spec traversals);
the frame path is vectorized. tests/unit/test_contract.py checks that the two agree on every rule.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.spec import FeatureSpec, normalize_name

LABEL = "label"  # name of the 0/1 target column in clean frames
FLOAT32_MAX = float(np.finfo(np.float32).max)
NOT_FINITE = "must be a finite number (NaN and infinity are not allowed)"
FLOAT32_RANGE = "must be a number within the 32-bit float range"
REQUIRED = "is required by the spec; got a missing value"


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
    return f"must be >= {low:g}, got {_shown(value)}"


def above(high: float, value: Any) -> str:
    return f"must be <= {high:g}, got {_shown(value)}"


def not_whole(value: Any) -> str:
    return f"must be a whole number, got {_shown(value)}"


def unknown_category(value: Any, allowed: list[str]) -> str:
    return f"unknown category {value!r}; expected one of {allowed}"


def _shown(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


# --------------------------------------------------------------------------------------------------------- records
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
            (c, spec.categories(c), {v.lower(): v for v in spec.categories(c)}, c in self.required)
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
        missing = [c for c in self.expected if c not in out]
        if missing:
            raise RecordError(missing[0], "missing field", index)
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
        for column, allowed, canonical, required in self.categories:
            value = record[column]
            if value is None:
                if required:
                    raise RecordError(column, REQUIRED, index)
                clean[column] = None
                continue
            if type(value) is not str:
                raise RecordError(column, f"must be a string or null, got {json_type(value)}", index)
            spelled = canonical.get(value.lower()) if value == value.strip() else None
            if spelled is None:
                key = value.strip().lower()
                if key in self.missing_markers or key == "":
                    if required:
                        raise RecordError(column, REQUIRED, index)
                    clean[column] = None
                    continue
                spelled = canonical.get(key)
                if spelled is None:
                    raise RecordError(column, unknown_category(value, allowed), index)
            clean[column] = spelled
        if self.id_column is not None:
            identifier = record.get(self.id_column)
            if identifier is not None:
                clean[self.id_column] = identifier if type(identifier) is str else _id_text(identifier)
        return clean

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


def _id_text(identifier: Any) -> str:
    """Ids are text everywhere (a CSV column of digits reads as numbers): 768805383.0 -> "768805383"."""
    if isinstance(identifier, float) and identifier.is_integer():
        return str(int(identifier))
    return str(identifier)


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


# ---------------------------------------------------------------------------------------------------------- frames
def _row(position: int) -> str:
    return f"row {position + 2}"  # data rows start on line 2 of a CSV (line 1 is the header)


def _fail(column: str, bad: pd.Series | np.ndarray, reason_of: Any) -> None:
    """Raise the DataError of the first True in `bad`, its reason built from the offending value."""
    flags = np.asarray(bad, dtype=bool)
    position = int(np.flatnonzero(flags)[0])
    reason = reason_of(position)
    total = int(flags.sum())
    more = f" ({total} such values in all)" if total > 1 else ""
    raise DataError(f"column '{column}', {_row(position)}: {reason}{more}", field=column, reason=reason)


def _unparsed(value: Any) -> str:
    """Why a value that pandas could not read as a number is refused: "nan" is a number, but not a finite one."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "+nan", "-nan"):
        return NOT_FINITE
    return not_a_number(value)


def _clean_numeric(series: pd.Series, column: str, feature: Any, required: bool, missing: set[str]) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        _fail(column, series.notna(), lambda p: not_a_number(bool(series.iloc[p])))
    if pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
    else:
        objects = series.astype(object)
        text = objects.map(lambda v: v.strip() if isinstance(v, str) else v)
        absent = text.isna() | text.map(lambda v: isinstance(v, str) and (v == "" or v.lower() in missing))
        odd = ~absent & text.map(lambda v: isinstance(v, bool) or not isinstance(v, str | int | float))
        if odd.any():
            _fail(column, odd, lambda p: not_a_number(objects.iloc[p]))
        values = pd.to_numeric(text.mask(absent), errors="coerce").astype("float64")
        bad = values.isna() & ~absent
        if bad.any():
            _fail(column, bad, lambda p: _unparsed(objects.iloc[p]))
    if required and values.isna().any():
        _fail(column, values.isna(), lambda p: REQUIRED)
    infinite = np.isinf(values)
    if infinite.any():
        _fail(column, infinite, lambda p: NOT_FINITE)
    present = values.notna()
    if feature.type == "int":
        fractional = present & (values != values.round())
        if fractional.any():
            _fail(column, fractional, lambda p: not_whole(values.iloc[p]))
    if feature.min is not None and (present & (values < feature.min)).any():
        _fail(column, present & (values < feature.min), lambda p: below(feature.min, values.iloc[p]))
    if feature.max is not None and (present & (values > feature.max)).any():
        _fail(column, present & (values > feature.max), lambda p: above(feature.max, values.iloc[p]))
    if (present & (values.abs() > FLOAT32_MAX)).any():
        _fail(column, present & (values.abs() > FLOAT32_MAX), lambda p: FLOAT32_RANGE)
    return values


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _clean_category(
    series: pd.Series, column: str, allowed: list[str] | None, required: bool, missing: set[str]
) -> pd.Series:
    """Each distinct value is cleaned once and the rows take their value's result: a column of 10,000 rows holds a
    handful of categories, so the string work is per category, not per row (it was most of a batch file's time)."""
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        objects = series.astype(object)
        odd = objects.map(lambda v: not isinstance(v, str) and not _is_missing(v))
        if odd.any():
            _fail(column, odd, lambda p: f"must be a string or null, got {json_type(objects.iloc[p])}")
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)  # missing -> -1
    present = codes >= 0
    safe = np.where(present, codes, 0)
    text = pd.Series(uniques, dtype=object).astype("string").str.strip()
    absent = (text.str.lower().isin(missing) | (text == "")).to_numpy(dtype=bool)
    text = text.mask(absent)
    row_absent = ~present | (absent[safe] if len(absent) else ~present)
    if required and row_absent.any():
        _fail(column, row_absent, lambda p: REQUIRED)
    if allowed is None:
        values = text.astype("object").where(text.notna(), None).to_numpy(dtype=object)
    else:
        canonical = {value.lower(): value for value in allowed}
        mapped = text.str.lower().map(canonical)
        unknown = (text.notna() & mapped.isna()).to_numpy(dtype=bool)
        row_unknown = present & (unknown[safe] if len(unknown) else present)
        if row_unknown.any():
            _fail(column, row_unknown, lambda p: unknown_category(series.iloc[p], allowed))
        values = mapped.astype("object").where(mapped.notna(), None).to_numpy(dtype=object)
    out = np.full(len(series), None, dtype=object)
    if len(values):
        out[present] = values[codes[present]]
    return pd.Series(out, index=series.index, dtype=object)


def clean(
    raw: pd.DataFrame, spec: FeatureSpec, require_target: bool = True, allow_unknown: bool = True
) -> pd.DataFrame:
    """Normalize names, drop leaks, type every feature, map missing markers to NaN/None and the target to 0/1.

    Returns the id column (as text, if the spec has one and the data carries it), every feature column in spec order
    and, when `require_target`, the `label` column. `allow_unknown=False` refuses columns the spec does not name,
    as the record path does; files often carry extra columns, so frames accept them by default.
    """
    if raw.empty:
        raise DataError("the data has no rows")
    frame = raw.rename(columns=normalize_name)
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"column(s) {duplicated} appear twice (names are compared case-insensitively)")
    if not allow_unknown:
        known = set(spec.feature_columns) | set(spec.drop) | {spec.target.column, spec.id_column}
        unknown = [c for c in frame.columns if c not in known]
        if unknown:
            reason = f"unknown field; expected fields are {spec.feature_columns}"
            raise DataError(f"column '{unknown[0]}': {reason}", field=unknown[0], reason=reason)
    needed = spec.feature_columns + ([spec.target.column] if require_target else [])
    missing_columns = [c for c in needed if c not in frame.columns]
    if missing_columns:
        raise DataError(
            f"missing column(s) {missing_columns} required by spec '{spec.name}'",
            field=missing_columns[0],
            reason="missing field",
        )

    missing_markers = {v.lower() for v in spec.missing_values}
    required = set(spec.required)
    out = pd.DataFrame(index=frame.index)
    if spec.id_column and spec.id_column in frame.columns:
        ids = frame[spec.id_column]
        if pd.api.types.is_integer_dtype(ids):  # the usual CSV of digits: no per-row Python
            out[spec.id_column] = ids.astype("string")
        else:
            out[spec.id_column] = (
                ids.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else _id_text(v))
                .astype("string")
                .str.strip()
            )
    for column, feature in spec.numeric.items():
        out[column] = _clean_numeric(frame[column], column, feature, column in required, missing_markers)
    for column, allowed in spec.categorical.items():
        out[column] = _clean_category(frame[column], column, allowed, column in required, missing_markers)
    for column, order in spec.ordinal.items():
        out[column] = _clean_category(frame[column], column, order, column in required, missing_markers)

    if require_target:
        out[LABEL] = _labels(frame[spec.target.column], spec)
    return out.reset_index(drop=True)


def _labels(column: pd.Series, spec: FeatureSpec) -> pd.Series:
    name = spec.target.column
    target = column.astype("string").str.strip()
    if target.isna().any():
        _fail(name, target.isna(), lambda p: "the target is empty")
    lowered = target.str.lower()
    positive = lowered == spec.target.positive.lower()
    if spec.target.negative is not None:
        negative = lowered == spec.target.negative.lower()
        unknown = ~(positive | negative)
        if unknown.any():
            labels = sorted(target[unknown].unique().tolist())[:5]
            raise DataError(
                f"column '{name}' has unknown target label(s) {labels}; expected "
                f"{spec.target.positive!r} or {spec.target.negative!r}",
                field=name,
                reason="unknown target label",
            )
    labels = positive.astype("int8")
    if labels.nunique() < 2:
        raise DataError(f"column '{name}' holds only one class; training needs both", field=name)
    return labels
