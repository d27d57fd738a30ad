"""Drift maths, free of IO: batch validation, the sliding window, and Evidently's data drift on DataFrames.

The service (app.py, monitor.py) and the reports (reporting/report.py) both call `compute_drift`, so the numbers in
Prometheus and in the HTML reports come from one definition. Methods are fixed (normed Wasserstein for numbers,
Jensen-Shannon for categories, both distances with threshold 0.1) rather than left to Evidently's size-dependent
auto-choice, so a column's score means the same thing whatever the reference size, and "drifted" is score >= 0.1.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DriftedColumnsCount, ValueDrift

from mlops.contract import RecordError, json_type, validate_record
from mlops.spec import FeatureSpec, normalize_name

NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"
COLUMN_THRESHOLD = 0.1
DATASET_DRIFT_SHARE = 0.5  # Evidently's "dataset drift" flag: at least half of the columns drifted
# Fields the drift sink adds to each record next to the features.
META_FIELDS = ("prediction", "model_run_id", "request_id", "timestamp")
# Evidently display names of tests whose score is a p-value (drift when below the threshold, not above).
P_VALUE_METHODS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "t_test",
    }
)


class BatchError(ValueError):
    """A posted batch is unusable; `field` and `index` say where, the message says why."""

    def __init__(self, reason: str, field: str | None = None, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.index = index

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.reason}
        if self.field is not None:
            out["field"] = self.field
        if self.index is not None:
            out["index"] = self.index
        return out


def validate_batch(payload: Any, spec: FeatureSpec, max_records: int) -> list[dict[str, Any]]:
    """A JSON list of record objects holding every feature of `spec` (plus optional prediction / metadata).

    Each record goes through the one record contract (`mlops.contract`), as at the API and the Kinesis consumer, so
    the window holds exactly what the model scored; a record the model would refuse is refused here with the same
    field and reason, and the record's index: it would silently poison the window otherwise. Fields the spec does
    not name (prediction, model run id, time) pass through. Raises the first record's BatchError.
    """
    records, refused = split_batch(payload, spec, max_records)
    if refused:
        raise refused[0]
    return records


def split_batch(payload: Any, spec: FeatureSpec, max_records: int) -> tuple[list[dict[str, Any]], list[BatchError]]:
    """`validate_batch` record by record: (the good records, a BatchError per refused one). One bad record must not
    cost the window the other 199 of a sink's batch. The batch as a whole (not a list, empty, too long) raises."""
    if not isinstance(payload, list):
        raise BatchError(f"body must be a JSON list of record objects, got {json_type(payload)}")
    if not payload:
        raise BatchError("body is an empty list; send at least one record")
    if len(payload) > max_records:
        raise BatchError(f"batch holds {len(payload)} records; at most {max_records} (MAX_BATCH_RECORDS)")
    features = set(spec.feature_columns)
    out: list[dict[str, Any]] = []
    refused: list[BatchError] = []
    for index, record in enumerate(payload):
        try:
            clean = validate_record(record, spec, index, allow_unknown=True)
        except RecordError as error:
            refused.append(BatchError(error.reason, error.field, index))
            continue
        prediction = record.get("prediction")
        if prediction is not None and (isinstance(prediction, bool) or not isinstance(prediction, int | float)):
            refused.append(BatchError(f"must be a number or null, got {json_type(prediction)}", "prediction", index))
            continue
        run_id = record.get("model_run_id")
        if run_id is not None and not isinstance(run_id, str):
            refused.append(BatchError(f"must be a string or null, got {json_type(run_id)}", "model_run_id", index))
            continue
        extra = {k: v for k, v in record.items() if k not in features and normalize_name(k) not in features}
        out.append(extra | clean)
    return out, refused


class SlidingWindow:
    """The newest `size` records of one data set; thread-safe (the request threads append, the worker reads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.received = 0  # records ever appended
        self.last_received_at: float | None = None

    def extend(self, records: Sequence[Mapping[str, Any]], now: float | None = None) -> None:
        with self._lock:
            self._records.extend(dict(r) for r in records)
            self.received += len(records)
            self.last_received_at = time.time() if now is None else now

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the window (the worker computes on it while requests keep appending)."""
        with self._lock:
            return list(self._records)

    def latest_run_id(self) -> str | None:
        with self._lock:
            for record in reversed(self._records):
                run_id = record.get("model_run_id")
                if run_id:
                    return str(run_id)
        return None


def data_definition(spec: FeatureSpec) -> DataDefinition:
    return DataDefinition(numerical_columns=list(spec.numeric), categorical_columns=[*spec.categorical, *spec.ordinal])


def feature_frame(rows: pd.DataFrame | Sequence[Mapping[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Only the spec's features, numbers as float, categories as strings (missing stays missing)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    missing = [c for c in spec.feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")
    out = pd.DataFrame(index=range(len(frame)))
    for column in spec.numeric:
        out[column] = pd.to_numeric(frame[column].reset_index(drop=True), errors="coerce").astype("float64")
    for column in [*spec.categorical, *spec.ordinal]:
        values = frame[column].reset_index(drop=True)
        out[column] = values.where(values.isna(), values.astype(str)).astype(object)
    return out


@dataclass(frozen=True)
class Reference:
    """The reference sample prepared once: cleaned features and the Evidently Dataset built from them."""

    frame: pd.DataFrame
    dataset: Dataset
    source: str  # where it came from (s3 URI), for /status and logs

    @property
    def rows(self) -> int:
        return len(self.frame)


def prepare_reference(frame: pd.DataFrame, spec: FeatureSpec, source: str = "") -> Reference:
    features = feature_frame(frame, spec)
    return Reference(features, Dataset.from_pandas(features, data_definition=data_definition(spec)), source)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """What one drift computation found; `columns` holds every feature in spec order."""

    rows: int
    reference_rows: int
    drifted_count: int
    share: float
    columns: list[ColumnDrift] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def dataset_drift(self) -> bool:
        return self.share >= DATASET_DRIFT_SHARE

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "drifted_columns": self.drifted_count,
            "drift_share": self.share,
            "dataset_drift": self.dataset_drift,
            "duration_seconds": round(self.duration_s, 4),
            "columns": {
                c.column: {"score": c.score, "method": c.method, "threshold": c.threshold, "drifted": c.drifted}
                for c in self.columns
            },
        }


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's own rule: p-value tests drift below the threshold, distances at or above it."""
    if math.isnan(score):
        return False
    return score <= threshold if method in P_VALUE_METHODS else score >= threshold


def drift_metrics(spec: FeatureSpec) -> list[Any]:
    """The Evidently metrics of a drift computation: a ValueDrift per feature and the drifted-columns count."""
    columns = spec.feature_columns
    metrics: list[Any] = [
        DriftedColumnsCount(
            columns=columns,
            drift_share=DATASET_DRIFT_SHARE,
            num_method=NUM_METHOD,
            cat_method=CAT_METHOD,
            threshold=COLUMN_THRESHOLD,
        )
    ]
    for column in columns:
        method = NUM_METHOD if column in spec.numeric else CAT_METHOD
        metrics.append(ValueDrift(column=column, method=method, threshold=COLUMN_THRESHOLD))
    return metrics


def run_report(current: pd.DataFrame, reference: Reference, spec: FeatureSpec, metrics: list[Any] | None = None):
    """Run an Evidently Report of `metrics` (default: drift_metrics) and return its snapshot."""
    current_features = feature_frame(current, spec)
    dataset = Dataset.from_pandas(current_features, data_definition=data_definition(spec))
    report = Report(metrics if metrics is not None else drift_metrics(spec))
    return report.run(dataset, reference.dataset)


def result_from_snapshot(
    snapshot_dict: Mapping[str, Any], spec: FeatureSpec, rows: int, reference_rows: int
) -> DriftResult:
    """Read the per-column scores and the drifted count out of an Evidently snapshot's dict()."""
    scores: dict[str, ColumnDrift] = {}
    count: float | None = None
    share: float | None = None
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":ValueDrift"):
            column = config["column"]
            score = float(metric["value"]) if metric.get("value") is not None else float("nan")
            method = str(config.get("method", ""))
            threshold = float(config.get("threshold", COLUMN_THRESHOLD))
            scores[column] = ColumnDrift(column, method, score, threshold, is_drifted(method, score, threshold))
        elif kind.endswith(":DriftedColumnsCount"):
            count = float(metric["value"]["count"])
            share = float(metric["value"]["share"])
    columns = [scores[c] for c in spec.feature_columns if c in scores]
    if count is None or share is None:
        count = sum(c.drifted for c in columns)
        share = count / len(columns) if columns else 0.0
    return DriftResult(rows, reference_rows, int(count), share, columns)


def compute_drift(
    current: pd.DataFrame | Sequence[Mapping[str, Any]], reference: Reference, spec: FeatureSpec
) -> DriftResult:
    """Data drift of `current` against the prepared reference, per feature and overall."""
    started = time.perf_counter()
    current_frame = feature_frame(current, spec)
    snapshot = run_report(current_frame, reference, spec)
    result = result_from_snapshot(snapshot.dict(), spec, len(current_frame), reference.rows)
    result.duration_s = time.perf_counter() - started
    return result


def mean_prediction(records: Sequence[Mapping[str, Any]]) -> float | None:
    values = [float(r["prediction"]) for r in records if isinstance(r.get("prediction"), int | float)]
    return sum(values) / len(values) if values else None
