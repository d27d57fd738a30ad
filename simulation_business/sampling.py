"""What the business simulators send: records sampled from clean data, optionally drifted for demos.

Pure functions on DataFrames and dicts (no IO), shared by send_data_api and send_data_kinesis. Drift is made strong
enough for the drift service to notice within one window: every numeric feature moves by `strength` standard
deviations (clipped to the spec's bounds, so records stay valid), and every category's frequency is swapped with
its mirror in the frequency ranking (the rarest value becomes the most common one).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
import pandas as pd

from mlops.spec import FeatureSpec

# The Kinesis input envelope that server.kinesis reads (documented there and in docs/serving-kinesis.md).
# Repeated here on purpose: the simulator image does not ship the server package.
ENVELOPE_ID = "request_id"
ENVELOPE_RECORD = "record"


def to_records(frame: pd.DataFrame, spec: FeatureSpec, with_id: bool = False) -> list[dict[str, Any]]:
    """Clean rows -> JSON-ready API records (feature columns; missing category -> None).

    Rows with a missing numeric value are dropped: the API refuses them, and a simulator should send valid data
    unless asked otherwise. `with_id` keeps the spec's id column (as text), which every answer echoes and outcomes
    by customer join on.
    """
    columns = spec.feature_columns
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"data lacks feature column(s) {missing} of spec '{spec.name}'")
    numeric = list(spec.numeric)
    usable = frame.loc[frame[numeric].notna().all(axis=1), columns] if numeric else frame[columns]
    records: list[dict[str, Any]] = []
    for row in usable.itertuples(index=False, name=None):
        record: dict[str, Any] = {}
        for column, value in zip(columns, row, strict=True):
            if column in spec.numeric:
                number = float(value)
                record[column] = round(number) if spec.numeric[column].type == "int" else number
            elif value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                record[column] = None
            else:
                record[column] = str(value)
        records.append(record)
    if with_id and spec.id_column and spec.id_column in frame.columns:
        ids = frame.loc[usable.index, spec.id_column].tolist()
        for record, identifier in zip(records, ids, strict=True):
            if identifier is not None and identifier is not pd.NA:
                record[spec.id_column] = str(identifier)
    return records


def sample(records: list[dict[str, Any]], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """`n` records drawn with replacement (copies, so callers may change them)."""
    if not records:
        raise ValueError("no records to sample from")
    if n < 1:
        raise ValueError("n must be at least 1")
    return [dict(records[i]) for i in rng.integers(0, len(records), size=n)]


def drift_frame(frame: pd.DataFrame, spec: FeatureSpec, strength: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A copy of `frame` with shifted distributions (see the module docstring); the spec's bounds still hold."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column, feature in spec.numeric.items():
        if column not in out.columns:
            continue
        values = pd.to_numeric(out[column], errors="coerce").astype("float64")
        std = float(values.std())
        if not math.isfinite(std) or std == 0.0:
            std = max(abs(float(values.mean() or 0.0)), 1.0) * 0.5
        shifted = values + strength * std
        if feature.max is not None and shifted.max() > feature.max:
            # no room above: shift down instead, so the change stays visible after clipping
            shifted = values - strength * std
        lower = feature.min if feature.min is not None else -np.inf
        upper = feature.max if feature.max is not None else np.inf
        shifted = shifted.clip(lower, upper)
        if feature.type == "int":
            shifted = shifted.round()
        out[column] = shifted
    for column in [*spec.categorical, *spec.ordinal]:
        if column not in out.columns:
            continue
        out[column] = _mirror_frequencies(out[column], rng)
    return out


def _mirror_frequencies(series: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Resample present values so the k-th most frequent value gets the frequency of the k-th least frequent."""
    present = series.notna()
    counts = series[present].astype(str).value_counts()
    if len(counts) < 2:
        return series
    values = counts.index.to_numpy()
    mirrored = counts.to_numpy()[::-1].astype(float)
    drawn = rng.choice(values, size=int(present.sum()), p=mirrored / mirrored.sum())
    out = series.astype(object).copy()
    out[present] = drawn
    return out


def new_request_id() -> str:
    return uuid.uuid4().hex


def envelope(record: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """The Kinesis input envelope for one record."""
    return {ENVELOPE_ID: request_id or new_request_id(), ENVELOPE_RECORD: record}
