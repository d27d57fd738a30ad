"""The model as it is logged to MLflow: an XGBoost booster plus the resolved spec that encodes its inputs.

Two ways in, with identical numbers:
- `ChurnPyfunc`, the MLflow pyfunc flavour: `mlflow.pyfunc.load_model(uri).predict(raw_frame)` returns churn
  probabilities for raw rows (Kaggle spelling and all), and `mlflow models serve` works on it.
- `ModelBundle`, the fast path for our servers: the same two files loaded directly, no pandas on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
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


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Raw rows in, churn probability out."""

    def load_context(self, context: Any) -> None:
        self._bundle = ModelBundle.from_files(context.artifacts["booster"], context.artifacts["spec"], nthread=1)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self._bundle.predict_raw(model_input)


def input_example(clean_frame: pd.DataFrame, spec: FeatureSpec, rows: int = 2) -> pd.DataFrame:
    """A few rows as a client sends them (the spec's names, categories as text, missing as None): the example the
    MLflow UI shows and `mlflow models serve` users copy."""
    example = clean_frame[spec.feature_columns].head(rows).astype(object)
    return example.where(example.notna(), None).reset_index(drop=True)


def log_model(booster: xgb.Booster, spec: FeatureSpec, workdir: Path, example: pd.DataFrame | None = None) -> Any:
    """Log booster + resolved spec as a pyfunc model named `model` in the active run, with an input example."""
    workdir.mkdir(parents=True, exist_ok=True)
    booster_path = workdir / BOOSTER_FILE
    spec_path = workdir / SPEC_FILE
    booster.save_model(str(booster_path))
    spec_path.write_text(spec.to_json())
    package_dir = Path(__file__).resolve().parent
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=ChurnPyfunc(),
        artifacts={"booster": str(booster_path), "spec": str(spec_path)},
        code_paths=[str(package_dir)],
        # No MLflow signature, on purpose (signature=False: none inferred either). MLflow enforces a signature before
        # the model sees the frame, by exact column name, and drops the columns it does not name: Kaggle's raw
        # `Customer_Age` would vanish. The model validates against its own spec instead (mlops.contract: any
        # spelling, numeric strings, missing values); that schema is the spec.json artifact and the metadata below.
        signature=False,
        input_example=example,
        metadata={
            "feature_spec": spec.name,
            "input_columns": spec.feature_columns,
            "numeric": list(spec.numeric),
            "categorical": {c: spec.categories(c) for c in [*spec.categorical, *spec.ordinal]},
            "id_column": spec.id_column,
            "required": spec.required,
        },
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"xgboost=={xgb.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            "pydantic>=2",
            "pyyaml",
        ],
    )
