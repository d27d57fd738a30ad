"""The HTTP API's answers to bad input: each a 4xx with the field and the reason, never a 500.

Runs the real Flask app (test client) over a real ModelService whose booster is a tiny XGBoost model trained here
on the spec's encoding, so no server is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.contract import RecordError, validate_record
from mlops.model_service import ModelService
from mlops.settings import PROJECT_ROOT, load_settings
from mlops.spec import FeatureSpec
from server.api import STATE_KEY, create_app
from tests.support.records import BAD_RECORDS, GOOD, KAGGLE_SPELLING, RecordingSink, tiny_service, with_


@pytest.fixture(scope="module")
def service() -> ModelService:
    return tiny_service()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def app(service: ModelService, sink: RecordingSink, tmp_path: Path) -> Any:
    settings = load_settings("local", state_dir=tmp_path, max_batch_records=5, max_body_bytes=4096)
    return create_app(settings, service=service, sinks=[sink])


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


# ----------------------------------------------------------------------------------------------- good input
def test_one_record_answers_the_design_shape(client: Any, service: ModelService, sink: RecordingSink) -> None:
    response = client.post("/predict", json=GOOD)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"churn chance", "model_run_id"}
    assert body["model_run_id"] == "run-tiny"
    expected = service.predict_records(service.validate([GOOD]))[0]
    assert body["churn chance"] == pytest.approx(expected, abs=1e-9)
    assert response.headers["X-Request-ID"]
    (logged,) = sink.entries
    assert logged["source"] == "http" and logged["request_id"] == response.headers["X-Request-ID"]
    assert logged["prediction"] == pytest.approx(body["churn chance"])
    assert logged["input"]["income_category"] == "$60K - $80K"


def test_a_list_is_answered_in_order(client: Any, service: ModelService) -> None:
    records = [with_(customer_age=age, gender=g) for age, g in [(25, "F"), (70, "M"), (45, "f")]]
    response = client.post("/predict", json=records, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123"
    body = response.get_json()
    expected = service.predict_records(service.validate(records))
    assert [b["churn chance"] for b in body] == pytest.approx(list(expected), abs=1e-9)


def test_missing_markers_and_null_categories_are_accepted(client: Any) -> None:
    response = client.post("/predict", json=[with_(education_level="Unknown"), with_(marital_status=None)])
    assert response.status_code == 200


def test_an_insane_request_id_is_replaced(client: Any) -> None:
    response = client.post("/predict", json=GOOD, headers={"X-Request-ID": "x" * 500})
    assert response.headers["X-Request-ID"] != "x" * 500
    assert len(response.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(("case", "record", "field", "reason"), BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_is_a_422_naming_field_and_reason(
    client: Any, app: Any, sink: RecordingSink, case: str, record: dict[str, Any], field: str, reason: str
) -> None:
    response = client.post("/predict", data=json.dumps(record), content_type="application/json")
    assert response.status_code == 422, case
    body = response.get_json()
    assert body["field"] == field
    assert reason in body["reason"]
    assert body["error"] == "invalid record"
    assert "index" not in body
    assert response.headers["X-Request-ID"]
    assert app.extensions[STATE_KEY].internal_errors == 0
    assert sink.entries == []


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_tokens_are_refused(client: Any, token: str) -> None:
    text = json.dumps(GOOD).replace('"credit_limit": 12691.0', f'"credit_limit": {token}')
    assert token in text
    response = client.post("/predict", data=text, content_type="application/json")
    assert response.status_code == 422
    assert response.get_json()["field"] == "credit_limit"
    assert "finite" in response.get_json()["reason"]


def test_a_bad_record_in_a_batch_is_named_by_index(client: Any, sink: RecordingSink) -> None:
    response = client.post("/predict", json=[GOOD, GOOD, with_(gender="X")])
    assert response.status_code == 422
    body = response.get_json()
    assert (body["index"], body["field"]) == (2, "gender")
    assert sink.entries == []  # all or nothing


def test_a_one_record_list_names_index_zero(client: Any) -> None:
    body = client.post("/predict", json=[with_(gender="X")]).get_json()
    assert body["index"] == 0


BAD_BODIES = [
    ("not JSON", b"customer_age=45", 400, "(body)", "not valid JSON"),
    ("truncated JSON", json.dumps(GOOD)[:-5].encode(), 400, "(body)", "not valid JSON"),
    ("empty body", b"", 400, "(body)", "empty"),
    ("not UTF-8", b'{"gender": "\xff"}', 400, "(body)", "not valid JSON"),
    ("a string", b'"hello"', 400, "(body)", "expected a JSON object or a list"),
    ("a number", b"42", 400, "(body)", "expected a JSON object or a list"),
    ("null", b"null", 400, "(body)", "expected a JSON object or a list"),
    ("empty list", b"[]", 400, "(body)", "at least one record"),
    ("list of non-objects", b"[1, 2]", 422, "(record)", "must be a JSON object"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 413, "(body)", "at most 4096 bytes"),
    ("too many records", json.dumps([GOOD] * 6).encode(), 413, "(body)", "at most 5 records"),
    ("body too large", json.dumps({**GOOD, "pad": "x" * 5000}).encode(), 413, "(body)", "at most 4096 bytes"),
]


@pytest.mark.parametrize(("case", "body", "status", "field", "reason"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_body_gets_its_4xx(
    client: Any, app: Any, case: str, body: bytes, status: int, field: str, reason: str
) -> None:
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == status, (case, response.get_data()[:200])
    answer = response.get_json()
    assert answer["field"] == field
    assert reason in answer["reason"]
    assert response.headers["X-Request-ID"]
    assert app.extensions[STATE_KEY].internal_errors == 0


def test_deep_nesting_within_the_size_limit_is_a_400(service: ModelService, tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, max_body_bytes=1_000_000)
    client = create_app(settings, service=service, sinks=[]).test_client()
    response = client.post("/predict", data=b"[" * 200_000 + b"]" * 200_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["reason"]


def test_unknown_path_and_wrong_method_are_json(client: Any) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not found"
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and "reason" in wrong.get_json()


def test_a_true_bug_is_a_json_500_without_a_stack_trace(app: Any, client: Any, service: ModelService) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("boom")

    state = app.extensions[STATE_KEY]
    original = state.service
    state.service = type("Broken", (), {"validate": broken, "run_id": "x"})()
    try:
        response = client.post("/predict", json=GOOD)
    finally:
        state.service = original
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "internal error"
    assert "Traceback" not in response.get_data(as_text=True) and "boom" not in response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] in body["reason"]
    assert state.internal_errors == 1


# ----------------------------------------------------------------------------------------------- health, metrics
def test_health_is_503_until_a_model_is_loaded(tmp_path: Path, service: ModelService) -> None:
    settings = load_settings(
        "local", state_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9", run_id=None, drift_service_url=None
    )
    app = create_app(settings, service=None, sinks=[])
    client = app.test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert client.post("/predict", json=GOOD).status_code == 503
    app.extensions[STATE_KEY].service = service
    app.extensions[STATE_KEY].close()
    healthy = client.get("/health")
    assert healthy.status_code == 200
    assert healthy.get_json()["model_run_id"] == "run-tiny"
    assert healthy.get_json()["source"] == "test"


def test_metrics_count_requests_by_status_and_predictions(client: Any) -> None:
    client.post("/predict", json=GOOD)
    client.post("/predict", json=with_(gender="X"))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'predict_api_requests_total{endpoint="/predict",status="200"}' in text
    assert 'predict_api_requests_total{endpoint="/predict",status="422"}' in text
    assert "predict_api_request_duration_seconds_bucket" in text
    assert "predict_api_prediction_churn_chance_count" in text
    assert 'predict_api_model_info{run_id="run-tiny",source="test"} 1.0' in text


# ----------------------------------------------------------------------------------------------- the validator itself
def test_validator_canonicalises_categories_and_keeps_the_id() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    clean = validate_record({**with_(gender=" f ", card_category="GOLD"), "clientnum": 7}, spec)
    assert (clean["gender"], clean["card_category"], clean["clientnum"]) == ("F", "Gold", "7")
    with pytest.raises(RecordError) as caught:
        validate_record(with_(gender="X"), spec, index=3)
    assert (caught.value.field, caught.value.index) == ("gender", 3)
    assert "record 3" in str(caught.value)


def test_swap_serves_the_new_model_atomically(service: ModelService) -> None:
    swapped = tiny_service("run-new")
    other = ModelService(service.bundle, source="test")
    before, run = other.predict_with_run(other.validate([GOOD]))
    assert run == "run-tiny"
    previous = other.swap(swapped.bundle, source="reload")
    assert previous is service.bundle
    assert other.run_id == "run-new" and other.source == "reload"
    after, run = other.predict_with_run(other.validate([GOOD]))
    assert run == "run-new"
    assert np.isfinite(after).all() and np.isfinite(before).all()


def test_a_swap_lets_the_collector_reach_the_replaced_model(service: ModelService) -> None:
    """The API worker freezes what it loaded (server.gunicorn_app.freeze_loaded_objects); after a swap the old
    model must be collectable again, or every hot reload would keep one model's cycles for good."""
    import gc

    from server.gunicorn_app import freeze_loaded_objects

    other = ModelService(service.bundle, source="test")
    freeze_loaded_objects()
    try:
        assert gc.get_freeze_count() > 0
        other.swap(tiny_service("run-thawed").bundle, source="reload")
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_columnar_path_equals_row_wise_path(service: ModelService) -> None:
    rng = np.random.default_rng(1)
    records = [
        with_(
            customer_age=int(rng.integers(18, 90)),
            gender=[None, "M", "F"][int(rng.integers(0, 3))],
            credit_limit=float(rng.uniform(0, 30000)),
            education_level=str(rng.choice(["Unknown", "College"])),
        )
        for _ in range(100)
    ]
    valid = service.validate(records)
    encoder = service.bundle.encoder
    assert np.array_equal(encoder.encode_columnar(valid), encoder.encode_records(valid), equal_nan=True)
    assert np.array_equal(service.predict_records(valid), service.bundle.predict_encoded(encoder.encode_records(valid)))


def test_a_verbatim_kaggle_row_is_scored_and_its_id_echoed(client: Any, service: ModelService) -> None:
    response = client.post("/predict", json=KAGGLE_SPELLING)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["clientnum"] == "768805383"
    expected = service.predict_records([validate_record(GOOD, service.spec)])[0]
    assert body["churn chance"] == pytest.approx(float(expected), abs=1e-9)
    many = client.post("/predict", json=[KAGGLE_SPELLING, {**KAGGLE_SPELLING, "CLIENTNUM": "1"}]).get_json()
    assert [a["clientnum"] for a in many] == ["768805383", "1"]


@pytest.mark.parametrize(
    "missing", [None, "", "Unknown", " unknown "], ids=["null", "empty", "marker", "marker-spaced"]
)
def test_missing_numbers_are_accepted_as_training_accepts_them(
    client: Any, service: ModelService, missing: Any
) -> None:
    response = client.post("/predict", json=with_(credit_limit=missing, total_trans_ct=missing))
    assert response.status_code == 200, response.get_json()
    as_nan = service.predict_records(
        [{**validate_record(GOOD, service.spec), "credit_limit": None, "total_trans_ct": None}]
    )
    assert response.get_json()["churn chance"] == pytest.approx(float(as_nan[0]), abs=1e-9)


def test_numeric_strings_are_numbers(client: Any) -> None:
    as_numbers = client.post("/predict", json=GOOD).get_json()["churn chance"]
    as_text = client.post("/predict", json={k: str(v) if not isinstance(v, str) else v for k, v in GOOD.items()})
    assert as_text.status_code == 200, as_text.get_json()
    assert as_text.get_json()["churn chance"] == pytest.approx(as_numbers, abs=1e-9)


def test_a_required_feature_refuses_missing_values() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml").model_copy(update={"required": ["credit_limit"]})
    for missing in (None, "", "Unknown"):
        with pytest.raises(RecordError) as caught:
            validate_record(with_(credit_limit=missing), spec)
        assert caught.value.field == "credit_limit" and "required" in caught.value.reason


def test_null_is_named_null_not_null_null() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    with pytest.raises(RecordError) as caught:
        validate_record(with_(gender=[None]), spec)
    assert "array [null]" in caught.value.reason
    from mlops.contract import json_type

    assert json_type(None) == "null"


def test_accept_unknown_fields_ignores_them_instead_of_refusing(service: ModelService) -> None:
    relaxed = ModelService(service.bundle, "test", allow_unknown=True)
    clean = relaxed.check(with_(shoe_size=42))
    assert "shoe_size" not in clean and clean["customer_age"] == 45
    with pytest.raises(RecordError, match="unknown field"):
        service.check(with_(shoe_size=42))
    settings = load_settings("local", accept_unknown_fields=True)
    assert settings.accept_unknown_fields is True


def test_after_a_swap_model_info_names_only_the_served_run() -> None:
    from prometheus_client import REGISTRY

    from server.api.metrics import publish_model

    first, second = tiny_service("run-first"), tiny_service("run-second")
    publish_model(first)
    publish_model(second)
    value = REGISTRY.get_sample_value
    assert value("predict_api_model_info", {"run_id": "run-first", "source": first.source}) == 0
    assert value("predict_api_model_info", {"run_id": "run-second", "source": second.source}) == 1
