"""Control-plane credentials (issue 24): env=cloud refuses to start without them, local secrets are made once and
kept, the drift service refuses records without its key, the native runtime hands the reader to read-only programs.
The live proof (real MLflow, Prefect, drift service with auth on) is tests/integration/test_control_plane_auth.py."""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

import pytest

from mlops import local_secrets
from mlops.control_plane import SERVICE_KEY_HEADER, prefect_auth, service_headers, service_key_ok
from mlops.mlflow_server import local_url
from mlops.mlflow_server import main as mlflow_server_main
from mlops.settings import PROJECT_ROOT, ConfigurationError, load_settings
from native.runtime import credentials_environment
from tests.support.control_plane import cloud_credentials


@pytest.mark.parametrize("missing", sorted(cloud_credentials()))
def test_cloud_refuses_to_start_without_each_credential(missing: str) -> None:
    given = cloud_credentials() | {missing: None}
    with pytest.raises(ConfigurationError, match=missing.upper()):
        load_settings("cloud", aws_endpoint_url=None, **given)
    with pytest.raises(ConfigurationError, match=missing.upper()):
        load_settings("cloud", aws_endpoint_url=None, **(cloud_credentials() | {missing: "changeme"}))
    load_settings("cloud", aws_endpoint_url=None, **cloud_credentials())  # all there: starts


def test_cloud_without_a_drift_service_needs_no_drift_key() -> None:
    load_settings(
        "cloud", aws_endpoint_url=None, drift_service_url=None, **(cloud_credentials() | {"drift_service_key": None})
    )


def test_a_prefect_auth_string_is_user_colon_password() -> None:
    with pytest.raises(ConfigurationError, match="user:password"):
        load_settings("cloud", aws_endpoint_url=None, **(cloud_credentials() | {"prefect_api_auth_string": "nocolon"}))
    assert prefect_auth(load_settings("local", prefect_api_auth_string="u:p:w")) == ("u", "p:w")
    assert prefect_auth(load_settings("local", prefect_api_auth_string=None)) is None


def test_local_secrets_are_made_once_private_and_let_the_environment_win(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.env"
    first = local_secrets.ensure(path)
    assert set(first) == set(local_secrets.LOCAL_SECRETS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(len(v) >= 12 for v in first.values()) and first["PREFECT_API_AUTH_STRING"].startswith("mlops:")
    assert len({first["MLFLOW_ADMIN_PASSWORD"], first["MLFLOW_TRACKING_PASSWORD"], first["DRIFT_SERVICE_KEY"]}) == 3
    assert local_secrets.ensure(path) == first  # kept: a database already holds these
    assert all(" ?= " in line for line in path.read_text().splitlines())  # Make's "unless set": env wins
    path.write_text("MLFLOW_ADMIN_PASSWORD ?= kept-one\n")
    again = local_secrets.ensure(path)
    assert again["MLFLOW_ADMIN_PASSWORD"] == "kept-one" and set(again) == set(local_secrets.LOCAL_SECRETS)
    assert local_secrets.main([]) == 2


def test_the_drift_service_key_check_is_open_without_a_key_and_exact_with_one() -> None:
    open_settings = load_settings("local", drift_service_key=None)
    assert service_key_ok(open_settings, None) and service_headers(open_settings) == {}
    keyed = load_settings("local", drift_service_key="k-123")
    assert service_headers(keyed) == {SERVICE_KEY_HEADER: "k-123"}
    assert service_key_ok(keyed, "k-123")
    assert not service_key_ok(keyed, None) and not service_key_ok(keyed, "k-124") and not service_key_ok(keyed, "")


def test_the_native_runtime_gives_read_only_programs_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # the integration session's, if it ran
        monkeypatch.delenv(name, raising=False)
    secured = load_settings(
        "local",
        state_dir=tmp_path,
        mlflow_admin_password="admin-pw-123456",
        mlflow_tracking_username="mlops-writer",
        mlflow_tracking_password="writer-pw-123456",
        mlflow_reader_password="reader-pw-123456",
        prefect_api_auth_string="mlops:pw",
        drift_service_key="key",
    )
    env = credentials_environment(secured)
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == "mlops:pw"
    assert (env["MLOPS_MLFLOW_READER_USERNAME"], env["MLOPS_MLFLOW_READER_PASSWORD"]) == (
        "mlops-reader",
        "reader-pw-123456",
    )
    assert env["MLFLOW_TRACKING_USERNAME"] == "mlops-writer" and env["DRIFT_SERVICE_KEY"] == "key"
    open_env = credentials_environment(load_settings("local", state_dir=tmp_path))
    assert open_env == {"MLOPS_MLFLOW_READER_USERNAME": "", "MLOPS_MLFLOW_READER_PASSWORD": ""}
    # which programs switch to the reader: those that only read the registry
    config = configparser.RawConfigParser()
    config.read(PROJECT_ROOT / "native" / "supervisord.conf")
    readers = {
        section.removeprefix("program:")
        for section in config.sections()
        if "MLOPS_MLFLOW_READER_PASSWORD" in config[section].get("environment", "")
    }
    assert readers == {"predict-api", "serve-kinesis", "drift-service", "report-deployment", "batch-deployment"}


def test_mlflow_refuses_to_start_open_in_the_cloud_or_half_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_url(["--host", "0.0.0.0", "--port", "5051"]) == "http://127.0.0.1:5051"
    for name, value in cloud_credentials().items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.delenv("MLFLOW_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_READER_PASSWORD", raising=False)
    assert mlflow_server_main(["--env", "cloud", "--port", "1"]) == 2
    assert "env=cloud needs MLFLOW_ADMIN_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_ADMIN_PASSWORD", "admin-pw-123456")  # an admin, but no reader: refused too
    assert mlflow_server_main(["--env", "local", "--port", "1"]) == 2
    assert "MLFLOW_READER_PASSWORD" in capsys.readouterr().err


def test_a_program_with_members_is_a_supervisord_group_probed_member_by_member() -> None:
    """KINESIS_CONSUMERS=3: supervisord's serve-kinesis:serve-kinesis-0..2, each probed on its own metrics port."""
    from native.runtime import programs

    settings = load_settings("local", kinesis_metrics_port=19697, kinesis_consumers=3)
    group = programs(settings)["serve-kinesis"]
    assert group.namespec == "serve-kinesis:*"
    assert group.processes() == [
        (f"serve-kinesis:serve-kinesis-{i}", f"http://127.0.0.1:{19697 + i}/metrics") for i in range(3)
    ]
    single = programs(settings)["drift-service"]
    assert single.namespec == "drift-service" and len(single.processes()) == 1
