"""The model as it is logged to MLflow: an XGBoost booster plus the resolved spec that encodes its inputs.

Two ways in, with identical numbers:
- `ChurnPyfunc` (mlops.pyfunc), the MLflow pyfunc flavour: `mlflow.pyfunc.load_model(uri).predict(raw_frame)`
  returns churn probabilities for raw rows (Kaggle spelling and all), and `mlflow models serve` works on it.
- `ModelBundle`, the fast path for our servers: the same two files loaded directly, no pandas on the way in.

This module does not import MLflow (0.6 s): a batch worker process or a scorer loads a model without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from mlops.data import clean
from mlops.encoding import FeatureEncoder
from mlops.spec import FeatureSpec
from mlops.tree_walker import MAX_ROWS, TreeWalker

BOOSTER_FILE = "booster.ubj"
SPEC_FILE = "spec.json"
MODEL_ARTIFACT = "model"  # name of the logged model inside its run


_NOT_BUILT = object()


@dataclass
class ModelBundle:
    """A loaded model: booster, resolved spec and encoder. `nthread` is pinned to avoid threads fighting."""

    booster: xgb.Booster
    spec: FeatureSpec
    run_id: str | None = None

    def __post_init__(self) -> None:
        self.encoder = FeatureEncoder(self.spec)
        self._walker: Any = _NOT_BUILT

    def walker(self) -> Any:
        """The compiled tree walker for small matrices (mlops.tree_walker), built and checked on first use; None
        where it would not give XGBoost's exact answer."""
        if self._walker is _NOT_BUILT:
            self._walker = TreeWalker.for_booster(self.booster)
        return self._walker

    @classmethod
    def from_files(
        cls, booster_path: str | Path, spec_path: str | Path, run_id: str | None = None, nthread: int = 1
    ) -> ModelBundle:
        booster = xgb.Booster(params={"nthread": nthread})
        booster.load_model(str(booster_path))
        spec = FeatureSpec.from_json(Path(spec_path).read_text())
        return cls(booster=booster, spec=spec, run_id=run_id)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, run_id: str | None = None, nthread: int = 1) -> ModelBundle:
        """Load from a downloaded MLflow model folder (its artifacts/ holds the two files)."""
        artifacts = Path(model_dir) / "artifacts"
        return cls.from_files(artifacts / BOOSTER_FILE, artifacts / SPEC_FILE, run_id=run_id, nthread=nthread)

    def predict_encoded(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities of an encoded matrix: up to MAX_ROWS rows by the tree walker (XGBoost's answer bit for
        bit, without its ~0.3 ms per call), more by XGBoost's own predictor."""
        if len(matrix) <= MAX_ROWS:
            walker = self.walker()
            if walker is not None:
                return walker.predict(matrix).astype(np.float64)
        return np.asarray(self.booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)

    def predict_clean(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_encoded(self.encoder.encode_frame(frame))

    def predict_raw(self, raw: pd.DataFrame) -> np.ndarray:
        return self.predict_clean(clean(raw, self.spec, require_target=False))
