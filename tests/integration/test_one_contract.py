"""One record contract at every entry point, on the real servers: the HTTP API (gunicorn), the Kinesis consumer,
batch scoring and the MLflow pyfunc get the same verbatim Kaggle rows and give the same probabilities (1e-6), each
echoing the customer's id; one bad record gets the same field and reason from each of them.

The rows are sent as the CSV file holds them: Kaggle's spelling, `CLIENTNUM`, the target and the two leak columns,
every value a string; a few have missing numbers (blank, "Unknown"), which training accepts and so must serving.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from batch.runner import run_batch
from mlops import aws
from mlops.data import read_raw
from mlops.settings import PROJECT_ROOT, Settings
from native.throwaway import stop_process
from tests.support.api import start_api
from tests.support.kinesis import Consumer, make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

KAGGLE = PROJECT_ROOT / "tests" / "data" / "bank_churners_kaggle_head.csv"
BAD_FIELD, BAD_REASON = "customer_age", 'must be a number, got string "forty"'


def kaggle_rows() -> list[dict[str, str]]:
    """The verbatim rows, plus three copies with missing numbers (blank and the missing marker), ids made unique."""
    with KAGGLE.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, (column, missing) in enumerate([("Credit_Limit", ""), ("Total_Trans_Ct", "Unknown"), ("Customer_Age", "")]):
        rows.append({**rows[i], "CLIENTNUM": f"99000000{i}", column: missing})
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return kaggle_rows()


@pytest.fixture(scope="module")
def pyfunc(settings: Settings, trained_run_id: str) -> Any:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"runs:/{trained_run_id}/model")


def test_every_entry_point_gives_the_same_answer_and_echoes_the_id(
    rows: list[dict[str, str]],
    pyfunc: Any,
    model_service: Any,
    service_env: dict[str, str],
    trained_run_id: str,
    settings: Settings,
    feature_snapshot: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ids = [row["CLIENTNUM"] for row in rows]
    folder = tmp_path_factory.mktemp("one-contract")

    # pyfunc: the CSV file read as a frame
    by_pyfunc = np.asarray(pyfunc.predict(read_raw(write_csv(rows, folder / "rows.csv"))), dtype=float)
    assert by_pyfunc.shape == (len(rows),)

    # batch scoring: the same file in a folder
    inputs, outputs = folder / "in", folder / "out"
    inputs.mkdir()
    write_csv(rows, inputs / "accounts.csv")
    summary = run_batch(str(inputs), str(outputs), model_service.bundle, settings=settings, workers=1)
    assert (summary.scored, summary.rejected) == (1, 0), summary.rejects
    scored = pd.concat([pd.read_parquet(p) for p in outputs.rglob("*.parquet")], ignore_index=True)
    assert scored["clientnum"].tolist() == ids
    by_batch = scored["churn_probability"].to_numpy()

    # HTTP: the rows as JSON, every value a string, as the file holds them
    api = start_api({**service_env, "RUN_ID": trained_run_id}, folder / "api")
    try:
        answers = requests.post(f"{api.url}/predict", json=rows, timeout=30)
        assert answers.status_code == 200, answers.text
        assert [a["clientnum"] for a in answers.json()] == ids
        by_http = np.array([a["churn chance"] for a in answers.json()])
        bad_http = requests.post(f"{api.url}/predict", json={**rows[0], "Customer_Age": "forty"}, timeout=30).json()
    finally:
        stop_process(api.process)

    # Kinesis: the same rows as envelopes, results read back with their ids
    kinesis = aws.client("kinesis", settings)
    streams = make_streams(kinesis)
    envelopes = [{"request_id": f"contract-{i:03d}", "record": row} for i, row in enumerate(rows)]
    envelopes.append({"request_id": "contract-bad", "record": {**rows[0], "Customer_Age": "forty"}})
    consumer = Consumer(
        {
            **service_env,
            "RUN_ID": trained_run_id,
            "DRIFT_SERVICE_URL": "",
            "STATE_DIR": str(folder / "kinesis"),
            **streams.env(),
        },
        folder / "kinesis",
    )
    try:
        put_envelopes(kinesis, streams.predictions, envelopes)
        results: dict[str, dict[str, Any]] = {}
        letters: list[dict[str, Any]] = []

        def all_back() -> bool:
            results.update({r["request_id"]: r for r in read_stream(kinesis, streams.results)})
            letters[:] = read_stream(kinesis, streams.dead_letters)
            return len(results) >= len(rows) and len(letters) >= 1

        wait_until(all_back, 120, f"Kinesis results and the dead letter; consumer log:\n{consumer.tail()}")
    finally:
        stop_process(consumer.process)
    in_order = [results[f"contract-{i:03d}"] for i in range(len(rows))]
    assert [r["clientnum"] for r in in_order] == ids
    by_kinesis = np.array([r["churn chance"] for r in in_order])

    for name, got in (("batch", by_batch), ("http", by_http), ("kinesis", by_kinesis)):
        np.testing.assert_allclose(got, by_pyfunc, atol=1e-6, err_msg=f"{name} differs from the pyfunc")
    assert len(set(np.round(by_pyfunc, 6))) > 1, "the rows should not all score the same"

    # one bad record: the same field and reason from every entry point
    assert (bad_http["field"], bad_http["reason"]) == (BAD_FIELD, BAD_REASON)
    assert (letters[0]["field"], letters[0]["request_id"]) == (BAD_FIELD, "contract-bad")
    assert BAD_REASON in letters[0]["reason"]
    write_csv([{**rows[0], "Customer_Age": "forty"}], inputs / "bad.csv")
    (inputs / "accounts.csv").unlink()
    rejected = run_batch(str(inputs), str(folder / "out-bad"), model_service.bundle, settings=settings, workers=1)
    assert rejected.rejected == 1 and BAD_REASON in rejected.rejects[0]["reason"]
    assert BAD_FIELD in rejected.rejects[0]["reason"]
    with pytest.raises(Exception, match=BAD_REASON) as caught:
        pyfunc.predict(read_raw(inputs / "bad.csv"))
    assert BAD_FIELD in str(caught.value)
