"""Why a score: each feature's exact contribution to the record's log-odds, from the booster itself (TreeSHAP).

XGBoost computes SHAP values for trees exactly (`pred_contribs=True`, Lundberg et al.'s TreeSHAP): one number per
encoded column plus a bias (the expected margin), summing to the record's margin, the log-odds of the answer. KServe
and Seldon put an explainer service beside the model for this; here the same booster that answered gives them, on
request, through every entry point (HTTP `?explain=k`, V2 parameter `explain`, the Kinesis envelope's `explain`,
batch `--explain K`, decision replay), so one record gets the same reasons whichever way it came.

Contributions are per *spec feature*, not per encoded column: a category's one-hot block is summed into its
feature (SHAP values are additive), so the reasons speak the spec's names and the record's own values.

An explanation: `{"bias", "contributions": top k by |contribution| as {"feature", "value", "contribution"},
"other": the sum of the contributions not listed, "units": "log-odds"}`, so bias + listed + other is the logit of
the answer whatever k is. Precision: XGBoost accumulates in float32; the sum matches the booster's margin to ~2e-6
x (1 + |margin|), and the logit of the answer (a float32 probability) to that plus its own float32 resolution.

Cost: TreeSHAP is O(trees x leaves x depth^2) per record, ~1 ms a record for 300 trees of depth 6 (bench/
bench_explain.py), against ~0.1 ms for the score: that is why it is asked for, not always given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

if TYPE_CHECKING:
    from mlops.model import ModelBundle

UNITS = "log-odds"
ALL = "all"
EVERY = 1 << 30  # "all" before the model's feature count is known: top_reasons lists every feature


class ExplainError(ValueError):
    """`explain` was not a count of reasons: the message says what is accepted."""


def explain_count(value: Any, n_features: int | None = None) -> int:
    """How many reasons a caller asked for: a whole number >= 0 (0: none), as a JSON number or query text, or "all"
    (or true); more than the model has features means all of them (`n_features`, when known, caps the count)."""
    every = n_features if n_features is not None else EVERY
    if value is None or value is False:
        return 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ALL:
            return every
        if not text.isdigit():
            raise ExplainError(f"must be a whole number of reasons (0 for none) or '{ALL}', got {value!r}")
        value = int(text)
    if value is True:
        return every
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ExplainError(f"must be a whole number of reasons (0 for none) or '{ALL}', got {value!r}")
    return min(value, every)


def feature_contributions(bundle: ModelBundle, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(contributions per spec feature, shape (rows, features) in `spec.feature_columns` order; bias per row), both
    float64, for an encoded matrix."""
    n_rows = len(matrix)
    columns = bundle.spec.feature_columns
    if n_rows == 0:
        return np.zeros((0, len(columns))), np.zeros(0)
    dmatrix = xgb.DMatrix(matrix, missing=np.nan, nthread=1)
    raw = np.asarray(bundle.booster.predict(dmatrix, pred_contribs=True), dtype=np.float64)
    return raw[:, :-1] @ bundle.encoder.owners, raw[:, -1]


def top_reasons(
    contributions: np.ndarray, bias: float, values: Mapping[str, Any], features: Sequence[str], k: int
) -> dict[str, Any]:
    """One record's explanation: its k largest contributions by magnitude (ties in spec order), the rest summed."""
    order = np.argsort(-np.abs(contributions), kind="stable")[:k]
    listed = [
        {"feature": features[i], "value": _plain(values.get(features[i])), "contribution": float(contributions[i])}
        for i in order
    ]
    other = float(contributions.sum() - contributions[order].sum()) if k < len(features) else 0.0
    return {"bias": float(bias), "contributions": listed, "other": other, "units": UNITS}


def explain_encoded(
    bundle: ModelBundle, matrix: np.ndarray, values: Sequence[Mapping[str, Any]], k: int | Sequence[int]
) -> list[dict[str, Any]]:
    """Explanations of an encoded matrix whose rows hold `values` (records, or a clean frame's rows: batch), with
    `k` reasons each or one k per row."""
    contributions, bias = feature_contributions(bundle, matrix)
    counts = [k] * len(values) if isinstance(k, int) else k
    features = bundle.spec.feature_columns
    return [top_reasons(c, b, v, features, n) for c, b, v, n in zip(contributions, bias, values, counts, strict=True)]


def explain_records(
    bundle: ModelBundle, records: Sequence[Mapping[str, Any]], k: int | Sequence[int]
) -> list[dict[str, Any] | None]:
    """Explanations of validated records (the record path: HTTP, V2, Kinesis, replay), in order; `k` for all of
    them or one per record (a Kinesis batch mixes envelopes that ask and do not); None where k is 0."""
    counts = [k] * len(records) if isinstance(k, int) else list(k)
    wanted = [i for i, count in enumerate(counts) if count > 0]
    out: list[dict[str, Any] | None] = [None] * len(records)
    if not wanted:
        return out
    chosen = [records[i] for i in wanted]
    explained = explain_encoded(bundle, bundle.encoder.encode_records(chosen), chosen, [counts[i] for i in wanted])
    for i, explanation in zip(wanted, explained, strict=True):
        out[i] = explanation
    return out


def mean_abs_contributions(bundle: ModelBundle, matrix: np.ndarray) -> dict[str, float]:
    """Global importance: mean |contribution| of each spec feature over the rows (training's held-out set, or live
    traffic in the report), largest first."""
    contributions, _ = feature_contributions(bundle, matrix)
    means = np.abs(contributions).mean(axis=0) if len(contributions) else np.zeros(len(bundle.spec.feature_columns))
    ranked = sorted(zip(bundle.spec.feature_columns, means.tolist(), strict=True), key=lambda kv: -kv[1])
    return dict(ranked)


def _plain(value: Any) -> Any:
    """A value as JSON carries it (numpy scalars from the frame path become Python's; NaN is missing: None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
