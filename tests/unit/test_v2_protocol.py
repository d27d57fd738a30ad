"""The Open Inference Protocol (V2) routes on the in-process app: the same scoring, logging and errors as /predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops import registry
from mlops.model_service import ModelService
from mlops.settings import load_settings
from server.api import create_app
from server.api.v2_tensors import input_metadata
from tests.support.records import GOOD, RecordingSink, tiny_service, with_

KEY = "v2-test-key-0123456789"


@pytest.fixture(scope="module")
def service() -> ModelService:
    return tiny_service("run-v2")


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def client(service: ModelService, sink: RecordingSink, tmp_path: Path) -> Any:
    settings = load_settings("local", state_dir=tmp_path, max_batch_records=5, max_body_bytes=8192)
    return create_app(settings, service=service, sinks=[sink]).test_client()


@pytest.fixture
def name(service: ModelService, tmp_path: Path) -> str:
    return registry.model_name_for(load_settings("local", state_dir=tmp_path), service.spec)


def v2_request(records: list[dict[str, Any]], service: ModelService, nested: bool = False) -> dict[str, Any]:
    """What MLServer's PandasCodec.encode_request makes of a data frame: one input per column."""
    types = {entry["name"]: entry["datatype"] for entry in input_metadata(service.spec)}
    inputs = []
    for column in records[0]:
        data = [r[column] for r in records]
        inputs.append(
            {
                "name": column,
                "shape": [len(records), 1] if nested else [len(records)],
                "datatype": types.get(column, "BYTES"),
                "data": [[v] for v in data] if nested else data,
            }
        )
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def test_metadata_names_every_feature_of_the_spec(client: Any, service: ModelService, name: str) -> None:
    body = client.get(f"/v2/models/{name}").get_json()
    assert body["name"] == name and body["versions"] == ["run-v2"]
    spec = service.spec
    by_name = {entry["name"]: entry for entry in body["inputs"]}
    assert set(by_name) == {*spec.feature_columns, spec.id_column}
    assert by_name["customer_age"]["datatype"] == "INT64"
    assert by_name["credit_limit"]["datatype"] == "FP64"
    assert by_name["gender"]["datatype"] == "BYTES"
    assert body["outputs"] == [{"name": "churn_chance", "datatype": "FP64", "shape": [-1]}]
    assert client.get(f"/v2/models/{name}/versions/run-v2").status_code == 200
    assert client.get(f"/v2/models/{name}/ready").get_json() == {"name": name, "ready": True}


@pytest.mark.parametrize("nested", [False, True], ids=["shape-n", "shape-n-1"])
def test_infer_answers_what_predict_answers_and_logs_alike(
    client: Any, service: ModelService, sink: RecordingSink, name: str, nested: bool
) -> None:
    records = [GOOD, with_(gender="F", customer_age=61), with_(income_category=None)]
    body = v2_request(records, service, nested) | {"id": "v2-request-1"}
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["model_name"] == name and answer["model_version"] == "run-v2" and answer["id"] == "v2-request-1"
    (output,) = answer["outputs"]
    assert output["name"] == "churn_chance" and output["shape"] == [3] and output["datatype"] == "FP64"
    expected = [client.post("/predict", json=r).get_json()["churn chance"] for r in records]
    assert output["data"] == pytest.approx(expected, abs=1e-12)
    v2_entries = [e for e in sink.entries if e["request_id"] == "v2-request-1"]  # the body's id is the request id
    assert len(v2_entries) == 3 and response.headers["X-Request-ID"] == "v2-request-1"
    assert [e["prediction"] for e in v2_entries] == pytest.approx(expected, abs=1e-12)


def test_the_id_column_is_echoed_and_logged(client: Any, service: ModelService, sink: RecordingSink, name: str) -> None:
    records = [GOOD | {"clientnum": "768805383"}, GOOD | {"clientnum": "1"}]
    answer = client.post(f"/v2/models/{name}/infer", json=v2_request(records, service)).get_json()
    assert [o["name"] for o in answer["outputs"]] == ["churn_chance", "clientnum"]
    assert answer["outputs"][1]["data"] == ["768805383", "1"]
    assert [e.get("customer_id") for e in sink.entries[-2:]] == ["768805383", "1"]
    only = client.post(
        f"/v2/models/{name}/infer", json=v2_request(records, service) | {"outputs": [{"name": "churn_chance"}]}
    ).get_json()
    assert [o["name"] for o in only["outputs"]] == ["churn_chance"]


def test_a_bad_row_names_the_column_and_the_row(client: Any, service: ModelService, name: str) -> None:
    records = [GOOD, with_(customer_age=-3)]
    response = client.post(f"/v2/models/{name}/infer", json=v2_request(records, service))
    assert response.status_code == 422
    body = response.get_json()
    assert body["field"] == "customer_age" and body["index"] == 1 and "-3" in body["reason"]
    absent = [with_(gender=...)]  # an absent feature is a missing value (issue 25), not an error
    assert client.post(f"/v2/models/{name}/infer", json=v2_request(absent, service)).status_code == 200


def _good(service: ModelService) -> dict[str, Any]:
    return v2_request([GOOD], service)


def _broken(service: ModelService, change: str) -> dict[str, Any]:
    body = _good(service)
    first = body["inputs"][0]
    if change == "no inputs":
        body["inputs"] = []
    elif change == "datatype":
        first["datatype"] = "FLOAT"
    elif change == "shape":
        first["shape"] = [2]
    elif change == "matrix":
        first["shape"] = [1, 19]
    elif change == "rows differ":
        first["shape"], first["data"] = [2], first["data"] * 2
    elif change == "twice":
        body["inputs"].append(dict(first))
    elif change == "string in INT64":
        first["data"] = ["forty-five"]
    elif change == "no name":
        first.pop("name")
    elif change == "unknown output":
        body["outputs"] = [{"name": "predict_proba"}]
    return body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("no inputs", "inputs"),
        ("datatype", "inputs[0].datatype"),
        ("shape", "inputs[0].data"),
        ("matrix", "inputs[0].shape"),
        ("rows differ", "inputs[1]"),
        ("twice", "inputs[19].name"),
        ("string in INT64", "inputs[0].data"),
        ("no name", "inputs[0].name"),
        ("unknown output", "outputs"),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_part(
    client: Any, service: ModelService, name: str, change: str, field: str
) -> None:
    response = client.post(f"/v2/models/{name}/infer", json=_broken(service, change))
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["field"] == field and body["reason"] and body["error"]


def test_wrong_names_limits_and_bodies(client: Any, service: ModelService, name: str) -> None:
    assert client.post("/v2/models/other/infer", json=_good(service)).status_code == 404
    wrong_version = client.post(f"/v2/models/{name}/versions/nope/infer", json=_good(service))
    assert wrong_version.status_code == 404 and "run-v2" in wrong_version.get_json()["reason"]
    assert client.post(f"/v2/models/{name}/versions/run-v2/infer", json=_good(service)).status_code == 200
    six = v2_request([GOOD] * 6, service)  # max_batch_records=5
    assert client.post(f"/v2/models/{name}/infer", json=six).status_code == 413
    for raw in (b"", b"{", b"[1]"):
        response = client.post(f"/v2/models/{name}/infer", data=raw, content_type="application/json")
        assert response.status_code == 400 and response.get_json()["field"] == "(body)"


def test_health_is_open_and_infer_is_behind_the_key(service: ModelService, tmp_path: Path, name: str) -> None:
    settings = load_settings("local", state_dir=tmp_path, api_key=KEY)
    client = create_app(settings, service=service, sinks=[]).test_client()
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/health/live").status_code == 200
    assert client.post(f"/v2/models/{name}/infer", json=_good(service)).status_code == 401
    assert client.get(f"/v2/models/{name}").status_code == 401
    keyed = client.post(f"/v2/models/{name}/infer", json=_good(service), headers={"x-api-key": KEY})
    assert keyed.status_code == 200


def test_ready_is_503_until_a_model_is_loaded(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9", run_id="absent")
    app = create_app(settings, sinks=[])
    try:
        assert app.test_client().get("/v2/health/ready").status_code == 503
    finally:
        app.extensions["churn_api"].close()
