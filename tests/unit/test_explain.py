"""Reasons with every score (mlops.explain): contributions + bias are the logit of the answer, top k are sorted by
magnitude, and HTTP, V2, Kinesis and batch give the same contributions for the same record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch.scoring import REASONS, score_frames
from batch.testing import tiny_bundle
from mlops import registry
from mlops.data import clean, generate_bank_churners
from mlops.explain import ExplainError, explain_count, explain_records
from mlops.model_service import ModelService
from mlops.settings import load_settings
from mlops.stores.ids import derived_id
from mlops.stores.prediction_log import SQLiteStore, make_entry
from server.api import create_app
from server.api.v2_tensors import input_metadata
from server.kinesis.envelope import parse_envelope
from tests.support.explain import assert_sums_to_logit

N_RECORDS = 1000


@pytest.fixture(scope="module")
def service() -> ModelService:
    return ModelService(tiny_bundle(rounds=60), source="test")


@pytest.fixture(scope="module")
def frame(service: ModelService) -> pd.DataFrame:
    raw = generate_bank_churners(N_RECORDS, seed=3)
    raw.loc[raw.index[::7], "Total_Trans_Ct"] = None  # missing values take the default branch: explained too
    return clean(raw, service.spec, require_target=False)


@pytest.fixture(scope="module")
def records(service: ModelService, frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame[service.spec.feature_columns].astype(object).where(frame.notna(), None).to_dict("records")
    return service.validate(rows)


def test_contributions_and_bias_are_the_logit_of_the_answer(service: ModelService, records: list[Any]) -> None:
    p = service.predict_records(records)
    for k in (len(service.spec.feature_columns), 3):  # every feature, and the top 3 with the rest in `other`
        explained = explain_records(service.bundle, records, k)
        assert len(explained) == N_RECORDS
        assert_sums_to_logit(explained, p, f"k={k}")
    every = explain_records(service.bundle, records, explain_count("all", len(service.spec.feature_columns)))
    assert all(e["other"] == 0.0 for e in every)


def test_top_k_is_sorted_by_magnitude_and_names_the_records_value(service: ModelService, records: list[Any]) -> None:
    for record, explained in zip(records[:200], explain_records(service.bundle, records[:200], 3), strict=True):
        sizes = [abs(c["contribution"]) for c in explained["contributions"]]
        assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True)
        assert all(c["value"] == record[c["feature"]] for c in explained["contributions"])
        assert explained["units"] == "log-odds"


def test_kinesis_and_batch_give_the_http_contributions(
    service: ModelService, records: list[Any], frame: pd.DataFrame
) -> None:
    k = len(service.spec.feature_columns)
    by_record = explain_records(service.bundle, records, k)
    # batch: the frame path (clean frame -> encode_frame) and its Parquet columns
    [scored] = score_frames(service.bundle, [("f.csv", pa.Table.from_pandas(frame, preserve_index=False))], (), k)
    assert scored.table is not None, scored.reason
    batch = scored.table.to_pylist()
    for row, explained in zip(batch, by_record, strict=True):
        got = {c["feature"]: c["contribution"] for c in row[REASONS]}
        want = {c["feature"]: c["contribution"] for c in explained["contributions"]}
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[f] for f in want], list(want.values()), atol=1e-9)
        assert row[f"{REASONS}_bias"] == pytest.approx(explained["bias"], abs=1e-12)
    # Kinesis: the envelope's field
    assert parse_envelope(json.dumps({"request_id": "r", "record": {}, "explain": 3}).encode()).explain == 3
    assert parse_envelope(json.dumps({"request_id": "r", "record": {}, "explain": "all"}).encode()).explain > k


@pytest.mark.parametrize(
    ("given", "expected"), [(None, 0), (0, 0), ("3", 3), (3, 3), (3.0, 3), ("all", 19), (True, 19), (50, 19)]
)
def test_explain_counts(given: Any, expected: int) -> None:
    assert explain_count(given, 19) == expected


@pytest.mark.parametrize("given", [-1, "x", "2.5", 2.5, [3], {"k": 3}])
def test_bad_explain_counts_say_what_is_accepted(given: Any) -> None:
    with pytest.raises(ExplainError, match="whole number of reasons"):
        explain_count(given, 19)


def test_derived_prediction_ids_are_stable_and_distinct(tmp_path: Path) -> None:
    one = derived_id(1_700_000_000_000, "predictions/shardId-0/1")
    assert one == derived_id(1_700_000_000_000, "predictions/shardId-0/1")
    assert one != derived_id(1_700_000_000_000, "predictions/shardId-0/2")
    assert len(one) == 32 and one[12] == "7"


def test_http_and_v2_answer_the_same_reasons(service: ModelService, records: list[Any], tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, max_batch_records=250, api_key=None)
    client = create_app(settings, service=service, sinks=[]).test_client()
    name = registry.model_name_for(settings, service.spec)
    some = records[:50]
    want = explain_records(service.bundle, some, 3)
    http = client.post("/predict?explain=3", json=some)
    assert http.status_code == 200, http.get_json()
    assert [a["explanation"] for a in http.get_json()] == want
    columns = {c: [r[c] for r in some] for c in some[0]}
    types = {entry["name"]: entry["datatype"] for entry in input_metadata(service.spec)}
    inputs = [{"name": c, "shape": [len(some)], "datatype": types[c], "data": v} for c, v in columns.items()]
    v2 = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs, "parameters": {"explain": 3}})
    assert v2.status_code == 200, v2.get_json()
    [tensor] = [o for o in v2.get_json()["outputs"] if o["name"] == "explanation"]
    assert [json.loads(text) for text in tensor["data"]] == want
    plain = client.post("/predict", json=some[0]).get_json()
    assert "explanation" not in plain
    bad = client.post("/predict?explain=lots", json=some[0])
    assert bad.status_code == 400 and bad.get_json()["field"] == "explain"
    bad_v2 = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs, "parameters": {"explain": -2}})
    assert bad_v2.status_code == 400 and bad_v2.get_json()["field"] == "parameters.explain"


def test_a_logged_decision_is_replayed_with_its_reasons(
    service: ModelService, records: list[Any], tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    settings = load_settings("local", state_dir=tmp_path, prediction_log_uri=uri, api_key=None)
    client = create_app(settings, service=service, sinks=[]).test_client()
    chances = service.predict_records(records[:2])
    store = SQLiteStore(uri)
    store.write_many(
        [make_entry(r, p, service.run_id, "http", "req-1") for r, p in zip(records[:2], chances, strict=True)]
    )
    answer = client.get("/predictions/req-1?explain=2")
    assert answer.status_code == 200, answer.get_json()
    decisions = answer.get_json()["predictions"]
    assert [d["churn chance"] for d in decisions] == pytest.approx(list(chances), abs=1e-12)
    assert [d["replayed churn chance"] for d in decisions] == pytest.approx(list(chances), abs=1e-12)
    assert [d["explanation"] for d in decisions] == explain_records(service.bundle, records[:2], 2)
    assert all(d["model_run_id"] == service.run_id and d["input"] for d in decisions)
    missing = client.get("/predictions/nobody")
    assert missing.status_code == 404 and missing.get_json()["field"] == "request_id"
    assert client.get("/predictions/req-1?model=yesterday").status_code == 400
