"""Session-wide real servers for integration tests: moto (S3 + Kinesis), MLflow and Prefect on free loopback ports.

One set per test session, started in parallel and torn down at the end; state lives in a temporary folder. Unit tests
never touch these fixtures, so `pytest tests/unit` starts no server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.settings import PROJECT_ROOT, Settings, load_settings
from native.throwaway import RegistryServers as Servers
from native.throwaway import (
    start_registry_servers,
)
from tests.support.control_plane import forget_exported_secrets, session_secrets
from tests.support.processes import TEST_ROWS, TEST_TRIALS


def pytest_configure(config: pytest.Config) -> None:
    """Every run starts without the secrets a shell exported (the Makefile exports the local ones)."""
    forget_exported_secrets()


@pytest.fixture(scope="session")
def control_plane_secrets() -> dict[str, str]:
    """The session's MLflow users, Prefect auth string and drift service key: every server runs authenticated."""
    return session_secrets()


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory, control_plane_secrets: dict[str, str]) -> Iterator[Servers]:
    found = start_registry_servers(tmp_path_factory.mktemp("platform-state"), secrets=control_plane_secrets)
    # MLflow's client reads its credentials from the environment only: the tests' own calls are the writer's
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ[name] = control_plane_secrets[name]
    try:
        yield found
    finally:
        found.stop()
        forget_exported_secrets()


@pytest.fixture(scope="session")
def settings(servers: Servers, control_plane_secrets: dict[str, str]) -> Settings:
    """Settings pointing at the session's servers, with their own bucket, state folder and no drift service."""
    return load_settings(
        "local",
        aws_endpoint_url=servers.moto_url,
        mlflow_tracking_uri=servers.mlflow_url,
        prefect_api_url=servers.prefect_api_url,
        state_dir=servers.state_dir,
        s3_bucket="test-feature-store",
        drift_service_url=None,
        run_id=None,
        api_key=None,
        max_evals=TEST_TRIALS,
        train_threads=1,
        **{name.lower(): value for name, value in control_plane_secrets.items()},
    )


@pytest.fixture(scope="session")
def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a platform process started as a subprocess against the session's servers."""
    return {
        **settings.as_env(),
        "PREFECT_HOME": str(settings.state_dir / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="session")
def feature_snapshot(settings: Settings) -> Any:
    """Generated data in the feature store; bucket and Kinesis streams created (what `make init_aws` does)."""
    from mlops.init_aws import create_resources, load_data
    from mlops.spec import FeatureSpec

    create_resources(settings)
    return load_data(settings, FeatureSpec.load(settings.feature_spec), None, rows=TEST_ROWS, seed=7)


@pytest.fixture(scope="session")
def trained_run_id(settings: Settings, feature_snapshot: Any) -> str:
    """A model trained through the real Prefect flow (3 trials) and registered as `challenger`."""
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings
    from model_orchestration.train_flow import model_tuning_and_uploading

    with temporary_settings(client_settings(settings)):
        result = model_tuning_and_uploading(
            max_evals=TEST_TRIALS, env="local", settings_overrides=settings.flow_overrides()
        )
    return result["run_id"]


@pytest.fixture(scope="session")
def model_service(settings: Settings, trained_run_id: str) -> Any:
    from mlops.model_service import ModelService

    service = ModelService.from_settings(settings)
    assert service.run_id == trained_run_id
    return service


@pytest.fixture(scope="session")
def sample_records(settings: Settings, model_service: Any) -> list[dict[str, Any]]:
    """200 valid API records (normalized field names), generated with another seed than the training data."""
    from mlops.data import clean, generate_bank_churners

    spec = model_service.spec
    frame = clean(generate_bank_churners(200, seed=99), spec, require_target=False)[spec.feature_columns]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests keep evidence (screenshots, logs) for people to look at; gitignored."""
    target = PROJECT_ROOT / "test-artifacts"
    target.mkdir(exist_ok=True)
    return target
