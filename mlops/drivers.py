"""Drivers of risk: which features move a model's scores most, at training and in production.

A model's global importance is each spec feature's mean |TreeSHAP contribution| (mlops.explain, in log-odds) over a
set of rows. Training computes it on the held-out test set and logs it with the run (`IMPORTANCE_ARTIFACT`, a bar
chart beside it, the top five named in the registered version's description); the scheduled report computes it
again on a bounded sample of the window's live inputs with the same model, and compares the two. A feature whose
live importance moved far from its training importance is where the world changed in a way the model *uses*: drift
in a feature the model ignores moves no score, drift in a top driver moves many.

Pure functions over importances (dict feature -> mean |contribution|, largest first) plus the one MLflow read of the
logged document; no Prefect and no HTML here (reporting/drivers.py renders the report's section).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.explain import UNITS, mean_abs_contributions

if TYPE_CHECKING:
    from mlops.model import ModelBundle

IMPORTANCE_ARTIFACT = "explanations/global_importance.json"
IMPORTANCE_PLOT = "explanations/global_importance.png"
TOP = 5
# live / training importance beyond which (or below whose inverse) a driver counts as shifted
SHIFT_RATIO = 1.5


def importance_document(bundle: ModelBundle, matrix: np.ndarray, rows_from: str) -> dict[str, Any]:
    """What a training run logs: the importance of every feature over `matrix` and where the rows came from."""
    return {
        "rows": len(matrix),
        "rows_from": rows_from,
        "statistic": "mean |contribution|",
        "units": UNITS,
        "importance": mean_abs_contributions(bundle, matrix),
    }


def top_drivers(importance: Mapping[str, float], n: int = TOP) -> list[str]:
    return [feature for feature, _ in sorted(importance.items(), key=lambda kv: -kv[1])[:n]]


def describe_top(importance: Mapping[str, float], n: int = TOP) -> str:
    """One sentence for the registered version's description, e.g. "Top drivers (mean |contribution| on the
    held-out set, log-odds): total_trans_ct 1.21, ..."."""
    listed = ", ".join(f"{feature} {importance[feature]:.3f}" for feature in top_drivers(importance, n))
    return f"Top drivers (mean |contribution| on the held-out set, {UNITS}): {listed}."


def importance_figure(importance: Mapping[str, float], title: str) -> Any:
    """A horizontal bar chart of every feature's importance, largest on top (a matplotlib Figure for
    `mlflow.log_figure`). matplotlib is imported here, with its file-only backend: nothing happens at import."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ranked = sorted(importance.items(), key=lambda kv: kv[1])
    figure = Figure(figsize=(7, 0.32 * len(ranked) + 1.2), layout="constrained")
    axes = figure.subplots()
    axes.barh([f for f, _ in ranked], [v for _, v in ranked], color="#c0392b")
    axes.set_xlabel(f"mean |contribution| ({UNITS})")
    axes.set_title(title)
    return figure


@dataclass(frozen=True)
class Driver:
    """One feature in the report's comparison; `training` is None when the run logged no importance."""

    feature: str
    live: float
    training: float | None
    live_rank: int
    training_rank: int | None

    @property
    def ratio(self) -> float | None:
        if self.training is None:
            return None
        if self.training == 0:
            return math.inf if self.live > 0 else 1.0
        return self.live / self.training

    @property
    def shifted(self) -> bool:
        ratio = self.ratio
        return ratio is not None and (ratio >= SHIFT_RATIO or ratio <= 1 / SHIFT_RATIO)


def compare(live: Mapping[str, float], training: Mapping[str, float] | None) -> list[Driver]:
    """Every feature of the live importance, by live importance, with its training figure and both ranks."""
    live_order = top_drivers(live, len(live))
    training_order = top_drivers(training, len(training)) if training else []
    training_rank = {feature: i + 1 for i, feature in enumerate(training_order)}
    return [
        Driver(
            feature=feature,
            live=float(live[feature]),
            training=float(training[feature]) if training and feature in training else None,
            live_rank=i + 1,
            training_rank=training_rank.get(feature),
        )
        for i, feature in enumerate(live_order)
    ]


def logged_importance(tracking_uri: str, run_id: str) -> dict[str, float] | None:
    """The importance a training run logged, or None when it logged none (a run from before this was logged).
    An MLflow failure is raised: the caller says why the comparison is missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    folder = IMPORTANCE_ARTIFACT.rsplit("/", 1)[0]
    if IMPORTANCE_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(client.download_artifacts(run_id, IMPORTANCE_ARTIFACT, scratch))
        document = json.loads(path.read_text(encoding="utf-8"))
    importance = document.get("importance") if isinstance(document, dict) else None
    if not isinstance(importance, dict):
        return None
    return {str(k): float(v) for k, v in importance.items()}
