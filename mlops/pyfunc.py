"""The MLflow side of the model: the pyfunc flavour and how a trained booster is logged (mlops.model stays free
of MLflow, so processes that only score never import it).

`ChurnPyfunc`: `mlflow.pyfunc.load_model(uri).predict(raw_frame)` returns churn probabilities for raw rows (Kaggle
spelling and all), the same numbers as `ModelBundle`; `mlflow models serve` works on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from mlops.model import BOOSTER_FILE, MODEL_ARTIFACT, SPEC_FILE, ModelBundle
from mlops.spec import FeatureSpec


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
