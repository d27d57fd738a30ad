"""Clean values -> the float32 matrix XGBoost sees, derived from a resolved spec alone.

Numeric columns pass through; categorical columns become one-hot blocks; ordinal columns become their rank
in the declared order. Missing values become NaN everywhere, which XGBoost routes natively. The same encoder
serves training (whole frames) and serving (lists of records), so both see identical inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from mlops.spec import FeatureSpec


class FeatureEncoder:
    """Precomputed lookups for one resolved spec; cheap to call per request."""

    def __init__(self, spec: FeatureSpec) -> None:
        if not spec.is_resolved:
            raise ValueError(f"spec '{spec.name}' has categorical columns without categories: resolve it first")
        self.spec = spec
        names: list[str] = []
        # (column, kind, first output index, lookup) per input column, in spec order
        self._plan: list[tuple[str, str, int, dict[str, int]]] = []
        for column in spec.numeric:
            self._plan.append((column, "numeric", len(names), {}))
            names.append(column)
        for column, values in spec.categorical.items():
            lookup = {v.lower(): i for i, v in enumerate(values or [])}
            self._plan.append((column, "onehot", len(names), lookup))
            names.extend(f"{column}={v}" for v in values or [])
        for column, order in spec.ordinal.items():
            self._plan.append((column, "rank", len(names), {v.lower(): i for i, v in enumerate(order)}))
            names.append(column)
        self.feature_names: list[str] = names
        self.owners = self._owner_matrix()
        self._width = {column: len(lookup) for column, kind, _, lookup in self._plan if kind == "onehot"}
        self._missing = {v.lower() for v in spec.missing_values}
        self._zeros = {width: [0.0] * width for width in self._width.values()}

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def _owner_matrix(self) -> np.ndarray:
        """(encoded columns, spec features) 0/1: which spec feature each encoded column belongs to, so a sum over
        a category's one-hot block is one product (mlops.explain); features in `spec.feature_columns` order."""
        position = {name: i for i, name in enumerate(self.spec.feature_columns)}
        owners = np.zeros((len(self.feature_names), len(position)))
        for column, kind, start, lookup in self._plan:
            stop = start + (len(lookup) if kind == "onehot" else 1)
            owners[start:stop, position[column]] = 1.0
        return owners

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Vectorized encoding of a clean frame (as `data.clean` returns)."""
        out = np.full((len(frame), self.n_features), np.nan, dtype=np.float32)
        for column, kind, start, lookup in self._plan:
            values = frame[column]
            if kind == "numeric":
                out[:, start] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                continue
            codes = values.astype("string").str.lower().map(lookup).to_numpy(dtype=np.float64, na_value=np.nan)
            if kind == "rank":
                out[:, start] = codes
            else:
                present = ~np.isnan(codes)
                block = np.zeros((len(frame), self._width[column]), dtype=np.float32)
                block[np.flatnonzero(present), codes[present].astype(int)] = 1.0
                block[~present] = np.nan
                out[:, start : start + self._width[column]] = block
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Row-wise encoding of already-validated records (dicts keyed by normalized column names).

        A value that is None, NaN or a missing marker ("Unknown") is encoded as missing.
        """
        missing = self._missing
        template = [math.nan] * self.n_features
        rows: list[list[float]] = []
        for record in records:
            target = template.copy()  # a list, filled, then one array: item assignment into numpy costs more
            for column, kind, start, lookup in self._plan:
                value = record.get(column)
                if value is None:
                    continue
                if kind == "numeric":
                    target[start] = float(value)
                    continue
                if isinstance(value, float) and math.isnan(value):
                    continue
                key = str(value).strip().lower()
                if key in missing:
                    continue
                code = lookup.get(key)
                if code is None:
                    raise ValueError(f"field '{column}': unknown category {value!r}")
                if kind == "rank":
                    target[start] = code
                else:
                    width = self._width[column]
                    target[start : start + width] = self._zeros[width]
                    target[start + code] = 1.0
            rows.append(target)
        if not rows:
            return np.full((0, self.n_features), np.nan, dtype=np.float32)
        return np.array(rows, dtype=np.float32)

    # ------------------------------------------------------------------ columnar fast path for large batches
    def encode_columnar(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Same matrix as `encode_records`, built column by column: the fast path for large batches.

        Per-row Python work dominates serving-time encoding, so each column is pulled out of the records
        in one C-level pass (`map(itemgetter)`), numeric columns go straight through `np.fromiter`, and
        categories are mapped through a per-batch table of their distinct values. Anything unusual (a
        missing key, a None in a numeric column) falls back to the row-wise encoder: same result always.
        """
        n_rows = len(records)
        if n_rows == 0:
            return np.empty((0, self.n_features), dtype=np.float32)
        try:
            return self._encode_columnar(records, n_rows)
        except (KeyError, TypeError, ValueError):
            return self.encode_records(records)  # raises its own, precise error if the input is really bad

    def _encode_columnar(self, records: Sequence[Mapping[str, Any]], n_rows: int) -> np.ndarray:
        out = np.empty((n_rows, self.n_features), dtype=np.float32)
        for column, kind, start, _ in self._plan:
            if kind == "numeric":  # fromiter over a C-level map: no per-row Python frame, no tuple building
                out[:, start] = np.fromiter(map(itemgetter(column), records), dtype=np.float64, count=n_rows)
        for column, kind, start, lookup in self._plan:
            if kind == "numeric":
                continue
            values = list(map(itemgetter(column), records))
            table = {value: self._category_code(column, value, lookup) for value in set(values)}
            codes = np.fromiter(map(table.__getitem__, values), dtype=np.float64, count=n_rows)
            if kind == "rank":
                out[:, start] = codes
                continue
            width = self._width[column]
            present = ~np.isnan(codes)
            block = np.zeros((n_rows, width), dtype=np.float32)
            block[np.flatnonzero(present), codes[present].astype(np.intp)] = 1.0
            block[~present] = np.nan
            out[:, start : start + width] = block
        return out

    def _category_code(self, column: str, value: Any, lookup: Mapping[str, int]) -> float:
        """The code of one category value as `encode_records` computes it; NaN for missing."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        key = str(value).strip().lower()
        if key in self._missing:
            return math.nan
        code = lookup.get(key)
        if code is None:
            raise ValueError(f"field '{column}': unknown category {value!r}")
        return float(code)
