"""Batch scoring against the real servers: S3 prefix in and out (moto server), the trained MLflow model, the
HTTP API giving the same numbers, and the Prefect flow."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.manifest import output_name
from batch.runner import run_batch
from mlops import aws
from mlops.data import generate_bank_churners
from mlops.settings import Settings
from mlops.spec import normalize_name

pytestmark = [pytest.mark.integration]


def upload_accounts(s3: Any, bucket: str, prefix: str, n_files: int, rows: int, seed: int) -> list[pd.DataFrame]:
    data = generate_bank_churners(n_files * rows, seed=seed)
    frames = []
    for index in range(n_files):
        part = data.iloc[index * rows : (index + 1) * rows].reset_index(drop=True)
        if index % 2:
            body = io.BytesIO()
            part.to_parquet(body, index=False)
            key = f"{prefix}/account-{index:04d}.parquet"
        else:
            body = io.BytesIO(part.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode())
            key = f"{prefix}/account-{index:04d}.csv"
        s3.put_object(Bucket=bucket, Key=key, Body=body.getvalue())
        frames.append(part)
    return frames


def api_records(raw: pd.DataFrame, spec: Any) -> list[dict[str, Any]]:
    frame = raw.rename(columns=normalize_name)[spec.feature_columns]
    return json.loads(frame.to_json(orient="records"))


def test_s3_prefix_scored_identically_to_model_service_and_http_api(settings: Settings, model_service: Any) -> None:
    from server.api import create_app

    s3 = aws.client("s3", settings)
    bucket = settings.s3_bucket
    frames = upload_accounts(s3, bucket, "batch-it/input", 4, 25, seed=21)
    s3.put_object(Bucket=bucket, Key="batch-it/input/bad.csv", Body=b"CLIENTNUM,Customer_Age\n1,forty\n")
    input_uri, output_uri = f"s3://{bucket}/batch-it/input", f"s3://{bucket}/batch-it/output"

    summary = run_batch(input_uri, output_uri, model_service.bundle, settings=settings, workers=2)
    assert (summary.scored, summary.rejected, summary.rows, summary.exit_code) == (4, 1, 100, 1)
    assert summary.run_id == model_service.run_id
    assert "customer_age" in summary.rejects[0]["reason"] and "forty" in summary.rejects[0]["reason"]

    client = create_app(settings, service=model_service, sinks=[]).test_client()
    spec = model_service.spec
    for index, raw in enumerate(frames):
        name = f"account-{index:04d}.{'parquet' if index % 2 else 'csv'}"
        key = f"batch-it/output/{output_name(model_service.run_id, name)}"
        scored = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).to_pandas()
        records = api_records(raw, spec)
        expected = model_service.predict_records(model_service.validate(records))
        response = client.post("/predict", json=records)
        assert response.status_code == 200, response.get_json()
        from_api = [item["churn chance"] for item in response.get_json()]
        assert scored["clientnum"].tolist() == raw["CLIENTNUM"].astype(str).tolist()
        np.testing.assert_allclose(scored["churn_probability"], expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(scored["churn_probability"], from_api, atol=1e-6, rtol=0)

    manifest_keys = s3.list_objects_v2(Bucket=bucket, Prefix=f"batch-it/output/{model_service.run_id}/_manifest/")
    assert manifest_keys["KeyCount"] == 1
    again = run_batch(input_uri, output_uri, model_service.bundle, settings=settings, workers=1)
    assert (again.scored, again.skipped, again.rejected) == (0, 4, 1)  # ETags unchanged: nothing rescored


def test_daily_batch_flow_scores_and_fails_on_rejects(settings: Settings, model_service: Any) -> None:
    from prefect.settings import temporary_settings

    from batch.flow import BatchRejects, daily_batch_predictions
    from mlops.prefect_api import client_settings

    s3 = aws.client("s3", settings)
    bucket = settings.s3_bucket
    upload_accounts(s3, bucket, "batch-flow/input", 2, 10, seed=5)
    overrides = settings.flow_overrides(
        batch_input_uri=f"s3://{bucket}/batch-flow/input", batch_output_uri=f"s3://{bucket}/batch-flow/out"
    )
    with temporary_settings(client_settings(settings)):
        result = daily_batch_predictions(workers=1, env="local", settings_overrides=overrides)
        assert (result["scored"], result["rejected"], result["rows"]) == (2, 0, 20)
        assert result["run_id"] == model_service.run_id

        s3.put_object(Bucket=bucket, Key="batch-flow/input/broken.parquet", Body=b"not parquet")
        with pytest.raises(BatchRejects, match="rejected=1"):
            daily_batch_predictions(workers=1, env="local", settings_overrides=overrides)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"batch-flow/out/{model_service.run_id}/_rejects/")
    assert listed["KeyCount"] == 1
