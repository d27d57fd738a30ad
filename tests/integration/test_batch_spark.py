"""The Spark engine in local[2] mode gives the embedded engine's (and ModelService's) predictions, file for file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.manifest import output_name
from batch.runner import run_batch
from batch.testing import TINY_RUN_ID, tiny_bundle, write_account_files
from mlops.model import ModelBundle
from mlops.model_service import ModelService
from mlops.spec import normalize_name

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One JVM for the whole session."""
    from batch.spark_engine import local_session

    session = local_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return tiny_bundle()


def test_spark_and_embedded_engines_and_model_service_agree(tmp_path: Path, spark: Any, bundle: ModelBundle) -> None:
    inputs = tmp_path / "in"
    csvs = write_account_files(inputs, 6, 40)
    parquets = write_account_files(inputs, 2, 33, fmt="parquet", seed=3, start=50)
    (inputs / "broken.csv").write_text("CLIENTNUM,Customer_Age\n1,forty\n")

    embedded = run_batch(str(inputs), str(tmp_path / "embedded"), bundle, workers=1)
    on_spark = run_batch(str(inputs), str(tmp_path / "spark"), bundle, engine="spark", spark=spark)
    assert (on_spark.scored, on_spark.rejected, on_spark.rows) == (embedded.scored, embedded.rejected, embedded.rows)
    assert (on_spark.scored, on_spark.rejected, on_spark.rows) == (8, 1, 6 * 40 + 2 * 33)
    assert on_spark.exit_code == 1
    assert "customer_age" in on_spark.rejects[0]["reason"]

    service = ModelService(bundle)
    spec = bundle.spec
    for path in [*csvs, *parquets]:
        from_spark = pq.read_table(tmp_path / "spark" / output_name(TINY_RUN_ID, path.name)).to_pandas()
        from_embedded = pq.read_table(tmp_path / "embedded" / output_name(TINY_RUN_ID, path.name)).to_pandas()
        raw = (pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)).rename(columns=normalize_name)
        records = json.loads(raw[[spec.id_column, *spec.feature_columns]].to_json(orient="records"))
        expected = service.predict_records(service.validate(records))
        assert from_spark["clientnum"].tolist() == from_embedded["clientnum"].tolist()
        np.testing.assert_allclose(from_spark["churn_probability"], from_embedded["churn_probability"], atol=1e-6)
        np.testing.assert_allclose(from_spark["churn_probability"], expected, atol=1e-6, rtol=0)


def test_spark_rerun_is_idempotent(tmp_path: Path, spark: Any, bundle: ModelBundle) -> None:
    inputs = tmp_path / "in"
    write_account_files(inputs, 4, 10)
    first = run_batch(str(inputs), str(tmp_path / "out"), bundle, engine="spark", spark=spark)
    second = run_batch(str(inputs), str(tmp_path / "out"), bundle, engine="spark", spark=spark)
    assert (first.scored, second.scored, second.skipped) == (4, 0, 4)
