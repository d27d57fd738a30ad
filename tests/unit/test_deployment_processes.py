"""The three deployment processes (training, reports, batch) and `trigger`: a dead Prefect server is one line on
stderr naming PREFECT_API_URL and exit code 2, never a traceback (the live path: tests/integration/test_deployments.py).
"""

from __future__ import annotations

import importlib

import pytest

from tests.conftest import free_port


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
    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{module}: error: Prefect is unreachable at PREFECT_API_URL={url}")
