"""The three deployment processes (training, reports, batch) and `trigger`: a dead Prefect server is one line on
stderr naming PREFECT_API_URL and exit code 2, never a traceback (the live path: tests/integration/test_deployments.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

# Imported here, at collection, not under capsys: importing Prefect binds its console log handler to the sys.stderr
# of that moment, and capsys's stream is closed after the test, which would break every later Prefect log line.
from batch import deployments as batch_deployments
from model_orchestration import deployments as training_deployments
from native.throwaway import free_port
from reporting import deployments as reporting_deployments

MAINS: dict[str, Callable[[list[str]], int]] = {
    "model_orchestration.deployments": training_deployments.main,
    "reporting.deployments": reporting_deployments.main,
    "batch.deployments": batch_deployments.main,
}


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("model_orchestration.deployments", ["--env", "local"]),
        ("model_orchestration.deployments", ["--env", "local", "trigger", "--wait", "1"]),
        ("reporting.deployments", ["--env", "local"]),
        ("batch.deployments", ["--env", "local"]),
    ],
)
def test_dead_prefect_is_named_with_its_setting(
    module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    assert MAINS[module](argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{module}: error: Prefect is unreachable at PREFECT_API_URL={url}")
