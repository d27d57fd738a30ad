"""SIGHUP in the gunicorn master: a failure to re-read settings or to reach MLflow publishes no switch order, says
why in the log, and leaves the workers on their model (the success path runs on real servers in
tests/integration/test_model_switch.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlops.settings import ConfigurationError, Settings, load_settings
from native.throwaway import free_port
from server.gunicorn_app import PredictApiApplication, options_for, switch_file_for


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings("local", state_dir=str(tmp_path), api_port=free_port(), **overrides)


def test_a_broken_env_file_switches_nothing_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path)

    def broken() -> Settings:
        raise ConfigurationError("RUN_ID: not a run id")

    app = PredictApiApplication(settings, options_for(settings), lambda *a, **k: None, broken)
    with caplog.at_level(logging.ERROR, logger="server.gunicorn_app"):
        app.switch_model()
    assert not switch_file_for(settings).exists()
    assert app.settings is settings
    assert "settings not re-read" in caplog.text and "RUN_ID: not a run id" in caplog.text


def test_mlflow_down_switches_nothing_and_names_the_setting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path)
    fresh = _settings(tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}", run_id="0" * 32)
    app = PredictApiApplication(settings, options_for(settings), lambda *a, **k: None, lambda: fresh)
    with caplog.at_level(logging.ERROR, logger="server.gunicorn_app"):
        app.switch_model()
    assert not switch_file_for(settings).exists()
    assert app.settings is settings
    assert "no model switch" in caplog.text and "MLFLOW_TRACKING_URI" in caplog.text
