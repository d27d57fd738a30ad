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
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from mlops.data import clean
from mlops.encoding import FeatureEncoder
from mlops.spec import FeatureSpec

BOOSTER_FILE = "booster.ubj"
SPEC_FILE = "spec.json"
MODEL_ARTIFACT = "model"  # name of the logged model inside its run


@dataclass
class ModelBundle:
    """A loaded model: booster, resolved spec and encoder. `nthread` is pinned to avoid threads fighting."""

    booster: xgb.Booster
    spec: FeatureSpec
    run_id: str | None = None

    def __post_init__(self) -> None:
        self.encoder = FeatureEncoder(self.spec)

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


def signature_for(spec: FeatureSpec) -> ModelSignature:
    """Raw inputs as the spec names them; categorical values are strings and may be missing."""
    columns = [ColSpec("double", name) for name in spec.numeric]
    columns += [ColSpec("string", name, required=False) for name in [*spec.categorical, *spec.ordinal]]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec("double", "churn_probability")]))


def log_model(booster: xgb.Booster, spec: FeatureSpec, workdir: Path) -> Any:
    """Log booster + resolved spec as a pyfunc model named `model` in the active run."""
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
        # No enforced signature: the model accepts raw column spellings (Kaggle's `Customer_Age` as well as
        # `customer_age`) and validates against its own spec instead; the spec's schema is kept as metadata.
        metadata={"feature_spec": spec.name, "input_columns": spec.feature_columns},
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"xgboost=={xgb.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
            "pydantic>=2",
            "pyyaml",
        ],
    )
