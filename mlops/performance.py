"""Realized performance: how good the served model's probabilities were, once the outcomes are known.

Pure functions on arrays (no IO): the drift service's performance monitor, the reports and the tests call them, so
a figure on the dashboard, in a report and in a test is computed one way. Below `min_labels` (or with one class
only, where ROC AUC is undefined) the answer is "not enough outcomes", never a number from ten rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

NOT_ENOUGH = "not enough outcomes"
CALIBRATION_BINS = 10
EPSILON = 1e-15  # log loss clips probabilities to [eps, 1 - eps], as sklearn does


@dataclass(frozen=True)
class Performance:
    labels: int  # settled predictions behind the figures
    positives: int
    roc_auc: float
    pr_auc: float  # average precision
    brier: float
    log_loss: float
    calibration_error: float  # expected calibration error, equal-width bins
    observed_rate: float  # share of positives among the outcomes
    mean_predicted: float  # mean predicted probability of the same rows

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NotEnough:
    labels: int
    min_labels: int
    reason: str

    @property
    def message(self) -> str:
        return f"{NOT_ENOUGH}: {self.reason}"


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Sum over equal-width probability bins of (rows in bin / rows) * |observed rate - mean probability|."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            total += count / len(labels) * abs(float(labels[members].mean()) - float(probabilities[members].mean()))
    return total


def realized(labels: Sequence[int], probabilities: Sequence[float], min_labels: int) -> Performance | NotEnough:
    """Every figure over the same rows, or why there are none."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    if len(y) < min_labels:
        return NotEnough(len(y), min_labels, f"{len(y)} of {min_labels} labels needed (OUTCOME_MIN_LABELS)")
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return NotEnough(len(y), min_labels, f"all {len(y)} outcomes have the same label; ROC AUC needs both")
    return Performance(
        labels=len(y),
        positives=positives,
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        log_loss=float(log_loss(y, np.clip(p, EPSILON, 1 - EPSILON), labels=[0, 1])),
        calibration_error=expected_calibration_error(y, p),
        observed_rate=float(y.mean()),
        mean_predicted=float(p.mean()),
    )
