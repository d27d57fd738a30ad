"""Fixtures of the Kinesis tests (module scope: each module gets its own client and consumer settings)."""

from __future__ import annotations

from typing import Any

import pytest

from mlops import aws
from mlops.settings import Settings


@pytest.fixture(scope="module")
def kinesis(settings: Settings, feature_snapshot: Any) -> Any:
    return aws.client("kinesis", settings)


@pytest.fixture(scope="module")
def consumer_env(service_env: dict[str, str], trained_run_id: str) -> dict[str, str]:
    return {**service_env, "RUN_ID": trained_run_id, "DRIFT_SERVICE_URL": "", "OMP_NUM_THREADS": "1"}
