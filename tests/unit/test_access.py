"""The API key check and the rate limit, in-process (Flask test client, no servers, no model)."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.settings import ConfigurationError, load_settings
from server.api import close_app, create_app
from server.api.access import AccessDenied, AccessPolicy, check_startup, parse_rate_limit
from tests.support.control_plane import cloud_credentials


class CountingSink:
    """Counts what would reach the prediction log."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def submit(self, records: Any) -> None:
        self.records.extend(records)

    def close(self, timeout: float = 5.0) -> None:
        pass


@pytest.fixture
def apps() -> Any:
    """Apps made by a test, closed after it: their model loaders (no MLflow here) stop retrying and logging."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        made.append(create_app(*args, **kwargs))
        return made[-1]

    yield make
    for app in made:
        close_app(app)


def _settings(**overrides: Any) -> Any:
    """No MLflow (port 9 is discard) and an empty state folder: the app never gets a model here."""
    return load_settings(
        "local",
        drift_service_url=None,
        mlflow_tracking_uri="http://127.0.0.1:9",
        state_dir="/nonexistent-x",
        **overrides,
    )


def test_cloud_refuses_to_start_without_api_key() -> None:
    settings = load_settings("cloud", aws_endpoint_url=None, api_key=None, **cloud_credentials())
    with pytest.raises(ConfigurationError, match="API_KEY"):
        check_startup(settings)
    with pytest.raises(ConfigurationError, match="API_KEY"):
        create_app(settings, sinks=[])


def test_cloud_with_a_key_requires_it() -> None:
    policy = AccessPolicy(load_settings("cloud", aws_endpoint_url=None, api_key="s3cret-key", **cloud_credentials()))
    assert policy.required
    with pytest.raises(AccessDenied) as missing:
        policy.check("/predict", None)
    assert missing.value.status == 401
    with pytest.raises(AccessDenied) as wrong:
        policy.check("/predict", "s3cret-kez")
    assert wrong.value.status == 403
    policy.check("/predict", "s3cret-key")
    policy.check("/health", None)
    policy.check("/metrics", None)


def test_local_without_key_is_open_but_has_no_admin() -> None:
    policy = AccessPolicy(_settings(api_key=None))
    policy.check("/predict", None)
    assert not policy.admin_allowed()


@pytest.mark.parametrize("text", ["lots", "600 per fortnight", "/minute"])
def test_bad_rate_limit_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT"):
        parse_rate_limit(text)


@pytest.mark.parametrize("uri", ["redis:/localhost", "postgres://db", "localhost:6379"])
def test_bad_rate_limit_storage_names_the_setting(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_STORAGE_URI"):
        check_startup(_settings(rate_limit="10/minute", rate_limit_storage_uri=uri))


def test_non_ascii_key_is_a_403_not_a_500(apps: Any) -> None:
    app = apps(_settings(api_key="k" * 16), sinks=[])
    client = app.test_client()
    response = client.post("/predict", json={}, headers={"x-api-key": "ключ"})
    assert response.status_code == 403


def test_refused_calls_never_reach_a_sink_and_rate_limit_answers_429(apps: Any) -> None:
    sink = CountingSink()
    app = apps(_settings(api_key="the-key", rate_limit="3/minute"), sinks=[sink])
    client = app.test_client()
    assert client.post("/predict", json={"a": 1}).status_code == 401
    assert client.post("/predict", json={"a": 1}, headers={"x-api-key": "nope"}).status_code == 403
    statuses = [client.post("/predict", json={"a": 1}, headers={"x-api-key": "the-key"}).status_code for _ in range(4)]
    # no model in this app: allowed calls get 503 (model not loaded), the fourth is over the limit
    assert statuses == [503, 503, 503, 429]
    limited = client.post("/predict", json={"a": 1}, headers={"x-api-key": "the-key"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 0
    assert limited.get_json()["field"] == "x-api-key"
    assert client.get("/health").status_code == 503  # open (and not rate limited): no model yet
    assert all(client.get("/metrics").status_code == 200 for _ in range(5))
    assert sink.records == []
    assert client.post("/admin/reload").status_code == 401


def test_outcomes_take_the_same_key_and_rate_limit(apps: Any, tmp_path: Any) -> None:
    """POST /outcomes: 401/403 without the key, 429 past the limit, 422 naming a bad field, 503 naming the store."""
    settings = _settings(api_key="the-key", rate_limit="4/minute")
    settings = settings.model_copy(update={"state_dir": tmp_path})
    client = apps(settings, sinks=[]).test_client()
    good = {"request_id": "r-1", "label": "Attrited Customer"}
    assert client.post("/outcomes", json=good).status_code == 401
    assert client.post("/outcomes", json=good, headers={"x-api-key": "nope"}).status_code == 403
    key = {"x-api-key": "the-key"}
    answer = client.post("/outcomes", json=good, headers=key)
    assert answer.status_code == 200
    assert answer.get_json()["unknown"] == 1 and answer.get_json()["unknown_keys"] == ["request_id=r-1"]
    bad = client.post("/outcomes", json=[good, {"request_id": "r-2", "label": "Gone"}], headers=key)
    assert bad.status_code == 422
    assert bad.get_json()["field"] == "label" and bad.get_json()["index"] == 1
    assert "unknown target label 'Gone'" in bad.get_json()["reason"]
    assert client.post("/outcomes", data=b"[", headers=key).status_code == 400
    again = client.post("/outcomes", json=good, headers=key)  # the fourth call of the minute: still allowed
    assert again.status_code == 200 and again.get_json()["unknown"] == 1
    assert client.post("/outcomes", json=good, headers=key).status_code == 429


def test_outcomes_with_the_store_down_is_a_503_naming_the_setting(apps: Any, tmp_path: Any) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's folder should be")
    settings = _settings(prediction_log_uri=f"sqlite:///{blocked / 'log.sqlite'}")
    client = apps(settings, sinks=[]).test_client()
    answer = client.post("/outcomes", json={"request_id": "r", "label": "Existing Customer"})
    assert answer.status_code == 503
    assert "PREDICTION_LOG_URI" in answer.get_json()["reason"]


def test_scoped_keys_refuse_a_path_outside_their_scope_naming_it() -> None:
    policy = AccessPolicy(_settings(api_keys="client-key:predict, ops-key:admin+outcomes"))
    policy.check("/predict", "client-key")
    policy.check("/v2/models/churn-model/infer", "client-key")
    for path, scope in (("/admin/reload", "admin"), ("/outcomes", "outcomes")):
        with pytest.raises(AccessDenied) as denied:
            policy.check(path, "client-key")
        assert denied.value.status == 403 and f"'{scope}' scope" in denied.value.reason
    policy.check("/admin/reload", "ops-key")
    policy.check("/outcomes", "ops-key")
    with pytest.raises(AccessDenied):
        policy.check("/predict", "ops-key")
    assert policy.admin_allowed()
    assert not AccessPolicy(_settings(api_keys="client-key:predict")).admin_allowed()


@pytest.mark.parametrize("entry", ["nokey", ":predict", "k:", "k:predict+root"])
def test_a_malformed_api_keys_entry_is_refused_without_echoing_the_key(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="API_KEYS entry 1") as refused:
        AccessPolicy(_settings(api_keys=entry))
    assert "nokey" not in str(refused.value)


def test_wrong_keys_from_one_address_end_in_429_and_are_counted(apps: Any) -> None:
    from prometheus_client import REGISTRY

    app = apps(_settings(api_key="right-key", auth_failure_limit="10/minute"), sinks=[CountingSink()])
    client = app.test_client()
    before = REGISTRY.get_sample_value("predict_api_auth_failures_total", {"reason": "limited"}) or 0
    statuses = [client.post("/predict", json={}, headers={"x-api-key": f"guess-{i}"}).status_code for i in range(30)]
    assert statuses[:10] == [403] * 10 and set(statuses[10:]) == {429}
    limited = client.post("/predict", json={}, headers={"x-api-key": "right-key"})
    assert limited.status_code == 429 and limited.headers["Retry-After"]  # even the right key, until the window passes
    assert REGISTRY.get_sample_value("predict_api_auth_failures_total", {"reason": "limited"}) - before == 21
    other = app.test_client()
    answer = other.post(
        "/predict", json={}, headers={"x-api-key": "right-key"}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert answer.status_code != 429  # another address is not limited by this one's failures
