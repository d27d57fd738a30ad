"""Helpers shared by the batch tests and benchmark: a tiny in-process model and folders of account files.

A real model comes from MLflow; these build one in a second with xgboost + ModelBundle, so unit tests and the
benchmark need no server.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import xgboost as xgb

from mlops.data import LABEL, clean, generate_bank_churners
from mlops.encoding import FeatureEncoder
from mlops.model import BOOSTER_FILE, SPEC_FILE, ModelBundle
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec

TINY_RUN_ID = "tinymodel0000000000000000000000"


def tiny_bundle(rows: int = 1500, rounds: int = 20, seed: int = 7, run_id: str = TINY_RUN_ID) -> ModelBundle:
    """An XGBoost model trained on generated data with the project's feature spec."""
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    frame = clean(generate_bank_churners(rows, seed=seed), spec)
    encoder = FeatureEncoder(spec)
    matrix = xgb.DMatrix(encoder.encode_frame(frame), label=frame[LABEL].to_numpy(), missing=np.nan)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": seed}, matrix, rounds
    )
    return ModelBundle(booster=booster, spec=spec, run_id=run_id)


def save_model_dir(bundle: ModelBundle, folder: Path) -> Path:
    """Write the bundle as an MLflow model folder's artifacts (what `ModelBundle.from_model_dir` reads)."""
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    bundle.booster.save_model(str(artifacts / BOOSTER_FILE))
    (artifacts / SPEC_FILE).write_text(bundle.spec.to_json())
    return folder


def write_account_files(
    folder: Path, n_files: int, rows: int, fmt: str = "csv", seed: int = 11, start: int = 0
) -> list[Path]:
    """`n_files` files of `rows` generated customers each, in the raw Kaggle schema (CSV quoted as Kaggle's)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = generate_bank_churners(n_files * rows, seed=seed)
    paths = []
    for index in range(n_files):
        part = data.iloc[index * rows : (index + 1) * rows]
        path = folder / f"account-{start + index:07d}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        else:
            part.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
        paths.append(path)
    return paths
