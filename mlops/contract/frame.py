"""The frame path of the contract, vectorized: training data and batch files (`clean`), with the same rules and
the same reasons as the record path (tests/unit/test_contract.py checks that the two agree on every rule)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.rules import (
    ABSENT_REQUIRED,
    FLOAT32_MAX,
    FLOAT32_RANGE,
    LABEL,
    MAX_ID_CHARS,
    NO_FEATURE,
    NOT_FINITE,
    REQUIRED,
    DataError,
    above,
    below,
    id_text,
    json_type,
    not_a_number,
    not_whole,
    ordinal_code_range,
    unknown_category,
)
from mlops.contract.text import UNSTORABLE, text_problem
from mlops.spec import FeatureSpec, normalize_name


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


def _check_ids(ids: pd.Series, column: str) -> None:
    """The record path's id rule (contract.rules.customer_id) on a column: bounded length, storable text."""
    present = ids.notna().to_numpy(dtype=bool)
    if not present.any():
        return
    lengths = ids.str.len().fillna(0).to_numpy()
    too_long = present & (lengths > MAX_ID_CHARS)
    if too_long.any():
        _fail(column, too_long, lambda p: f"must be at most {MAX_ID_CHARS} characters, got {int(lengths[p])}")
    bad = ids.str.contains(UNSTORABLE, regex=True).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        _fail(column, bad, lambda p: str(text_problem(ids.iloc[p])))


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


def _decode_ordinal(series: pd.Series, column: str, spec: FeatureSpec) -> pd.Series:
    """Integer codes of an ordinal feature (numbers, or strings of digits as a CSV holds them) -> its categories,
    by position in the spec's order from `ordinal_codes_start`: the record path's rule, on each distinct value."""
    mapping: dict[Any, Any] = {}
    for value in pd.unique(series.dropna()):
        if isinstance(value, bool) or not isinstance(value, str | int | float | np.integer | np.floating):
            continue
        if isinstance(value, str) and not value.strip().isdigit():
            continue
        plain = value.item() if isinstance(value, np.generic) else value
        coded = spec.ordinal_code(column, plain)
        if coded is None:
            if not isinstance(value, str):
                reason = ordinal_code_range(plain, spec.ordinal_codes_start, spec.ordinal[column])
                _fail(column, (series.astype(object) == value).to_numpy(dtype=bool), lambda p, why=reason: why)
            continue
        mapping[value] = coded
    if not mapping:
        return series
    return series.astype(object).map(lambda v: mapping.get(v, v) if not _is_missing(v) else v)


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
    # training data must carry every feature column; for scoring (a batch file, the pyfunc) an absent feature is a
    # missing value like null, as in a record, unless the spec requires it
    needed = spec.feature_columns + ([spec.target.column] if require_target else [])
    if not require_target:
        needed = [c for c in needed if c in spec.required]
        if not any(c in frame.columns for c in spec.feature_columns):
            raise DataError(f"the data {NO_FEATURE} ({spec.name})", field="(record)", reason=NO_FEATURE)
    missing_columns = [c for c in needed if c not in frame.columns]
    if missing_columns:
        reason = "missing field" if require_target else ABSENT_REQUIRED
        raise DataError(
            f"missing column(s) {missing_columns} required by spec '{spec.name}'",
            field=missing_columns[0],
            reason=reason,
        )
    absent = [c for c in spec.feature_columns if c not in frame.columns]
    if absent:
        frame = frame.assign(**{c: None for c in absent})

    missing_markers = {v.lower() for v in spec.missing_values}
    required = set(spec.required)
    out = pd.DataFrame(index=frame.index)
    if spec.id_column and spec.id_column in frame.columns:
        ids = frame[spec.id_column]
        if pd.api.types.is_integer_dtype(ids):  # the usual CSV of digits: no per-row Python
            out[spec.id_column] = ids.astype("string")
        else:
            out[spec.id_column] = (
                ids.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else id_text(v))
                .astype("string")
                .str.strip()
            )
        _check_ids(out[spec.id_column], spec.id_column)
    for column, feature in spec.numeric.items():
        out[column] = _clean_numeric(frame[column], column, feature, column in required, missing_markers)
    for column, allowed in spec.categorical.items():
        out[column] = _clean_category(frame[column], column, allowed, column in required, missing_markers)
    for column, order in spec.ordinal.items():
        decoded = _decode_ordinal(frame[column], column, spec)
        out[column] = _clean_category(decoded, column, order, column in required, missing_markers)

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
