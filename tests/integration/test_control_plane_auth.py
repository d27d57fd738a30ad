"""Every control plane refuses anonymous callers (issue 24), on the session's real servers, which run with auth on:
MLflow's basic-auth app (admin, writer, reader made by mlops/mlflow_server.py), Prefect with its auth string.

Every other integration test already drives the platform through these authenticated servers (flows, reports,
the API and the consumer as the writer); here: anonymous and wrong callers are refused, the reader reads and
cannot write, and the API serves a model as the reader, as the native runtime runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops import registry
from mlops.settings import Settings
from native.throwaway import stop_process
from tests.support.api import start_api
from tests.support.control_plane import READER

pytestmark = pytest.mark.integration


def test_mlflow_refuses_anonymous_and_wrong_callers(settings: Settings, trained_run_id: str) -> None:
    url = settings.mlflow_tracking_uri
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, auth=("mlops-writer", "wrong-password"), timeout=10).status_code == 401
    assert requests.get(f"{url}/health", timeout=10).status_code == 200  # probes stay open
    writer = (settings.mlflow_tracking_username or "", settings.mlflow_tracking_password or "")
    assert requests.get(search, auth=writer, timeout=10).status_code == 200
    artifacts = f"{url}/api/2.0/mlflow-artifacts/artifacts"
    assert requests.get(artifacts, timeout=10).status_code == 401


def test_the_reader_reads_the_registry_and_cannot_move_an_alias(
    settings: Settings, trained_run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = registry.model_name_for(settings)
    # the session's run is also a version of the promotion tests' model (registered again there): this model's only
    (version,) = MlflowClient(settings.mlflow_tracking_uri).search_model_versions(
        f"name = '{name}' and run_id = '{trained_run_id}'"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", READER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", settings.mlflow_reader_password or "")
    reader = MlflowClient(settings.mlflow_tracking_uri)
    assert reader.get_run(trained_run_id).info.run_id == trained_run_id
    assert reader.get_model_version(name, version.version).run_id == trained_run_id
    with pytest.raises(MlflowException) as refused:
        reader.set_registered_model_alias(name, "champion", version.version)
    assert "403" in str(refused.value) or "PERMISSION_DENIED" in str(refused.value)
    with pytest.raises(MlflowException):
        reader.set_tag(trained_run_id, "tampered", "yes")


def test_prefect_refuses_calls_without_its_auth_string(settings: Settings) -> None:
    api = settings.prefect_api_url
    assert requests.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open
    assert requests.post(f"{api}/flows/filter", json={}, timeout=10).status_code == 401
    assert requests.post(f"{api}/flows/filter", json={}, auth=("mlops", "wrong"), timeout=10).status_code == 401
    user, _, password = (settings.prefect_api_auth_string or "").partition(":")
    assert requests.post(f"{api}/flows/filter", json={}, auth=(user, password), timeout=10).status_code == 200


def test_the_api_serves_and_reloads_as_the_reader(
    service_env: dict[str, str], settings: Settings, trained_run_id: str, tmp_path: Path
) -> None:
    server = start_api(
        service_env,
        tmp_path / "api-as-reader",
        workers=1,
        MLFLOW_TRACKING_USERNAME=READER,
        MLFLOW_TRACKING_PASSWORD=settings.mlflow_reader_password or "",
        API_KEY="admin-key-for-this-test",
    )
    try:
        health = requests.get(f"{server.url}/health", headers={"x-api-key": "admin-key-for-this-test"}, timeout=10)
        assert health.status_code == 200 and len(health.json()["model_run_id"]) == 32  # downloaded as the reader
        reloaded = requests.post(
            f"{server.url}/admin/reload", headers={"x-api-key": "admin-key-for-this-test"}, timeout=60
        )
        assert reloaded.status_code == 200, reloaded.text
    finally:
        stop_process(server.process)
