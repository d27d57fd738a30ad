"""Issue 25 on the real servers: the reference design's requests, and reasons with every score.

The API under gunicorn, the Kinesis consumer on moto and batch scoring with the session's trained model give, for
1,000 generated records, contributions that with the bias make the logit of the answer, the same from each; the
reference design's curl body answers 200 naming the absent fields; bare Kinesis records read twice (checkpoints
lost, as after a crash before the checkpoint) are logged once.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from batch.runner import run_batch
from batch.scoring import REASONS
from mlops import aws
from mlops.data import clean, generate_bank_churners
from mlops.settings import Settings
from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import stop_process
from tests.support.api import MAX_RECORDS, start_api
from tests.support.explain import assert_sums_to_logit
from tests.support.kinesis import Consumer, make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

N = 1000
REFERENCE_BODY = {  # the reference design's `curl -X POST :9696/predict` body, as it documents it
    "customer_age": 45,
    "gender": "M",
    "dependent_count": 3,
    "education_level": 3,
    "marital_status": "married",
    "income_category": 2,
    "card_category": "blue",
    "months_on_book": 39,
    "total_relationship_count": 5,
    "credit_limit": 12691.0,
    "total_revolving_bal": 777,
}


def by_feature(explanation: dict[str, Any]) -> dict[str, float]:
    return {c["feature"]: c["contribution"] for c in explanation["contributions"]}


def test_every_entry_point_explains_alike_and_the_reference_requests_work(
    settings: Settings,
    service_env: dict[str, str],
    trained_run_id: str,
    model_service: Any,
    feature_snapshot: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("explain")
    spec = model_service.spec
    frame = clean(generate_bank_churners(N, seed=25), spec, require_target=False)
    rows = frame[spec.feature_columns].astype(object).where(frame.notna(), None).to_dict("records")
    records = model_service.validate(rows)

    # HTTP under gunicorn: all contributions, then the top 3; the reference design's body
    api = start_api({**service_env, "RUN_ID": trained_run_id}, folder / "api")
    try:
        http: list[dict[str, Any]] = []
        for start in range(0, N, MAX_RECORDS):
            answer = requests.post(
                f"{api.url}/predict?explain=all", json=records[start : start + MAX_RECORDS], timeout=60
            )
            assert answer.status_code == 200, answer.text
            http += answer.json()
        top = requests.post(f"{api.url}/predict?explain=3", json=records[:100], timeout=60).json()
        reference = requests.post(f"{api.url}/predict", json=REFERENCE_BODY, timeout=30)
        # decision replay: the logged input, the run that answered, the same reasons recomputed
        sent = requests.post(
            f"{api.url}/predict?explain=3", json=records[:3], headers={"X-Request-ID": "replay-me"}, timeout=30
        ).json()
        replays: list[dict[str, Any]] = []

        def replayed() -> bool:
            answer = requests.get(f"{api.url}/predictions/replay-me?explain=3", timeout=30)
            replays[:] = answer.json().get("predictions", []) if answer.status_code == 200 else []
            return len(replays) == 3

        wait_until(replayed, 30, "the request in the prediction log")
    finally:
        stop_process(api.process)
    chances = np.array([a["churn chance"] for a in http])
    assert_sums_to_logit([a["explanation"] for a in http], chances, "http")
    for answer in top:
        sizes = [abs(c["contribution"]) for c in answer["explanation"]["contributions"]]
        assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True)
    assert reference.status_code == 200, reference.text
    absent = {"months_inactive_12_mon", "contacts_count_12_mon", "avg_open_to_buy", "total_amt_chng_q4_q1"}
    assert absent <= set(reference.json()["missing"])
    for answer, replay in zip(sent, replays, strict=True):
        assert replay["model_run_id"] == trained_run_id and replay["source"] == "http"
        assert replay["replayed churn chance"] == answer["churn chance"] == replay["churn chance"]
        assert replay["explanation"] == answer["explanation"]

    # batch: the frame path, its Parquet columns
    inputs = folder / "in"
    inputs.mkdir()
    generate_bank_churners(N, seed=25).to_csv(inputs / "accounts.csv", index=False)
    summary = run_batch(
        str(inputs), str(folder / "out"), model_service.bundle, settings=settings, workers=1, explain="all"
    )
    assert (summary.scored, summary.rejected) == (1, 0), summary.rejects
    batch = pd.concat([pd.read_parquet(p) for p in (folder / "out").rglob("*.parquet")], ignore_index=True)
    np.testing.assert_allclose(batch["churn_probability"].to_numpy(), chances, atol=1e-6)

    # Kinesis: envelopes asking for every reason
    kinesis = aws.client("kinesis", settings)
    streams = make_streams(kinesis)
    env = {**service_env, "RUN_ID": trained_run_id, "DRIFT_SERVICE_URL": "", **streams.env()}
    consumer = Consumer({**env, "STATE_DIR": str(folder / "kinesis")}, folder / "kinesis")
    try:
        put_envelopes(
            kinesis,
            streams.predictions,
            [{"request_id": f"x-{i:04d}", "record": r, "explain": "all"} for i, r in enumerate(records)],
        )
        results: dict[str, dict[str, Any]] = {}

        def all_back() -> bool:
            results.update({r["request_id"]: r for r in read_stream(kinesis, streams.results)})
            return len(results) >= N

        wait_until(all_back, 180, f"{N} results; consumer log:\n{consumer.tail()}")
    finally:
        stop_process(consumer.process)
    stream = [results[f"x-{i:04d}"] for i in range(N)]
    assert_sums_to_logit([r["explanation"] for r in stream], np.array([r["churn chance"] for r in stream]), "kinesis")

    # the same contributions from every entry point
    for i in range(N):
        want = by_feature(http[i]["explanation"])
        for what, got in (
            ("kinesis", by_feature(stream[i]["explanation"])),
            ("batch", by_feature({"contributions": list(batch[REASONS][i])})),
        ):
            assert got.keys() == want.keys(), what
            np.testing.assert_allclose([got[f] for f in want], list(want.values()), atol=1e-9, err_msg=what)


def test_bare_records_read_twice_are_logged_once(
    settings: Settings,
    service_env: dict[str, str],
    trained_run_id: str,
    sample_records: list[dict[str, Any]],
    feature_snapshot: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("bare-replay")
    kinesis = aws.client("kinesis", settings)
    streams = make_streams(kinesis)
    uri = f"sqlite:///{folder / 'predictions.sqlite'}"
    env = {
        **service_env,
        "RUN_ID": trained_run_id,
        "DRIFT_SERVICE_URL": "",
        "STATE_DIR": str(folder),
        "PREDICTION_LOG_URI": uri,
        **streams.env(),
    }
    bare = [json.dumps(r).encode() for r in sample_records[:40]]
    put_envelopes(kinesis, streams.predictions, bare)
    for round_ in (1, 2):  # the second consumer finds no checkpoint: it reads every record again
        consumer = Consumer(env, folder / f"run-{round_}")
        try:
            wait_until(
                lambda wanted=40 * round_: len(read_stream(kinesis, streams.results)) >= wanted,
                120,
                f"round {round_} results; log:\n{consumer.tail()}",
            )
        finally:
            assert consumer.terminate() == 0
        shutil.rmtree(folder / "kinesis-checkpoints")
    results = read_stream(kinesis, streams.results)
    ids = [r["request_id"] for r in results]
    assert len(ids) == 80 and len(set(ids)) == 40 and all(i.startswith("shardId-") and ":" in i for i in ids)
    logged = [
        e
        for e in SQLiteStore(uri).read(pd.Timestamp("2000-01-01").to_pydatetime(), None, None)
        if e["source"] == "kinesis"
    ]
    assert sorted(e["request_id"] for e in logged) == sorted(set(ids))
