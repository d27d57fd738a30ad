"""The business simulators' answers when something is missing, on the session's real moto server:
a missing stream and a dead API are named with their setting; an empty feature store falls back to generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from native.throwaway import free_port

pytestmark = pytest.mark.integration


def run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_stream_is_named_with_its_setting(service_env: dict[str, str], feature_snapshot: Any) -> None:
    done = run(
        "simulation_business.send_data_kinesis",
        {**service_env, "KINESIS_PREDICTIONS_STREAM": "no-such-stream"},
        "--count",
        "1",
        "--interval",
        "0",
    )
    assert done.returncode == 2
    assert "'no-such-stream' does not exist (setting KINESIS_PREDICTIONS_STREAM)" in done.stderr


def test_empty_feature_store_falls_back_to_generated_data(service_env: dict[str, str], feature_snapshot: Any) -> None:
    env = {**service_env, "S3_BUCKET": "an-empty-bucket-nobody-made"}
    done = run("simulation_business.send_data_kinesis", env, "--count", "2", "--batch", "3", "--interval", "0")
    assert done.returncode == 0, done.stderr
    assert "sending GENERATED records instead" in done.stderr and "make init_aws" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"puts": 2, "failed": 0, "records": 6}


def test_store_data_is_used_when_present(service_env: dict[str, str], feature_snapshot: Any) -> None:
    done = run("simulation_business.send_data_kinesis", service_env, "--count", "1", "--interval", "0", "--drift")
    assert done.returncode == 0, done.stderr
    assert f"{feature_snapshot.uri('reference.parquet')}, drifted by 1 std" in done.stdout
    assert "GENERATED" not in done.stderr


def test_dead_api_is_named_and_the_exit_code_says_so(service_env: dict[str, str], feature_snapshot: Any) -> None:
    env = {**service_env, "API_HOST": "127.0.0.1", "API_PORT": str(free_port())}
    done = run("simulation_business.send_data_api", env, "--count", "2", "--interval", "0", "--timeout", "2")
    assert done.returncode == 1
    assert done.stderr.count("predict API unreachable") == 2 and "API_HOST/API_PORT" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sent": 2, "failed": 2}
