"""Parity of the two runtimes: each compose service and its native program run the same entry point.

Reads both definitions (the compose files with PyYAML, native/supervisord.conf with configparser) and
compares, for every name, what process is started (`python -m server.api`, `mlflow server`, ...;
paths, hosts and ports may differ). A service that exists on one side only fails, apart from the
commented allow-list below.

The parsing helpers here (compose files, Dockerfiles, supervisord programs) are also used by
test_compose_files.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.compose import (
    COMPOSE_FILES,
    REPO,
    all_services,
    compose_argv,
    entry_point,
    native_programs,
    parse_dockerfile,
    service_dockerfile,
)

# ----------------------------------------------------------------------------------------------- Dockerfiles


# ----------------------------------------------------------------------------------------------- supervisord


# ================================================================================================ the tests

# Compose-only services, by design: neither has a Debian package, so the native runtime has no equivalent.
COMPOSE_ONLY = {
    # The prediction log: MongoDB in compose; natively the embedded SQLite store (sqlite:///... URI).
    "mongo": "MongoDB is not in Debian; natively the prediction log is SQLite",
    # Dashboards: natively proven by running every panel's PromQL against a real Prometheus.
    "grafana": "Grafana is not in Debian; natively the dashboard queries are checked against Prometheus",
    # The online store: Redis in compose; natively SQLite by default (ONLINE_STORE_URI=redis://... uses Debian's
    # redis-server, which tests start on their own ports).
    "redis": "natively the online store is SQLite unless ONLINE_STORE_URI names a redis-server",
    # Backups: natively every program shares STATE_DIR and train-deployment serves the backup deployment; compose
    # needs a container that mounts every service's volume.
    "backup": "natively train-deployment serves the backup flow over the one shared STATE_DIR",
    # Parallel tuning's driver: natively `make train TUNING_PARALLELISM=N` runs the flow in the venv, which has the
    # spark extra; in compose the worker image has no JRE, so a one-off container of the Spark image drives it.
    "train-spark": "natively the training process in the venv drives SparkTrials itself (make train)",
}
# Native-only programs, each with its reason.
NATIVE_ONLY: dict[str, str] = {}
# Native launchers: a first-party module that renders a config for loopback and the state dir, then os.exec's the
# same binary the compose service runs (so supervisord manages that binary itself). Compared as that binary.
NATIVE_LAUNCHERS = {
    # renders monitoring/prometheus/prometheus.yml with 127.0.0.1 targets, execs Debian's prometheus
    "python -m monitoring.prometheus.native": "prometheus",
    # renders monitoring/alerting/alertmanager.yml with the receiver on loopback, execs Debian's alertmanager
    "python -m monitoring.alerting.native": "alertmanager",
    # renders reporting/nginx/reports.conf.template in a non-root main config, execs Debian's nginx
    "python -m reporting.nginx_native": "nginx",
    # renders server/nginx/api-gateway.conf.template with the API replicas' loopback ports, execs Debian's nginx
    "python -m server.gateway_native": "nginx",
}

COMPOSE = all_services()
NATIVE = native_programs()


@pytest.mark.parametrize("name", sorted(set(COMPOSE) - set(COMPOSE_ONLY)))
def test_compose_service_has_native_program(name: str) -> None:
    compose_file = COMPOSE[name][0]
    assert name in NATIVE, (
        f"compose service {name!r} ({compose_file}) has no [program:{name}] in native/supervisord.conf; "
        f"add one running {entry_point(compose_argv(COMPOSE[name][1]) or ['?'])!r}"
    )


@pytest.mark.parametrize("name", sorted(set(NATIVE) - set(NATIVE_ONLY)))
def test_native_program_has_compose_service(name: str) -> None:
    assert name in COMPOSE, (
        f"native program {name!r} has no service of that name in {' or '.join(COMPOSE_FILES)}; "
        f"add one running {entry_point(NATIVE[name])!r}"
    )


@pytest.mark.parametrize("name", sorted(set(COMPOSE) & set(NATIVE)))
def test_same_entry_point(name: str) -> None:
    compose_file, definition = COMPOSE[name]
    argv = compose_argv(definition)
    assert argv, f"{name} ({compose_file}): no command, entrypoint or Dockerfile CMD to compare"
    native = entry_point(NATIVE[name])
    assert entry_point(argv) == NATIVE_LAUNCHERS.get(native, native), (
        f"{name}: compose runs {argv}, native runs {NATIVE[name]}"
    )


@pytest.mark.parametrize(("launcher", "binary"), sorted(NATIVE_LAUNCHERS.items()))
def test_native_launchers_exec_the_binary_compose_runs(launcher: str, binary: str) -> None:
    module = launcher.removeprefix("python -m ")
    assert any(entry_point(argv) == launcher for argv in NATIVE.values()), (
        f"no native program uses {launcher}: drop it from NATIVE_LAUNCHERS"
    )
    source = REPO.joinpath(*module.split(".")).with_suffix(".py")
    assert source.is_file(), f"{launcher}: {source} missing"
    text = source.read_text()
    assert re.search(r"os\.exec[lv]p?e?\(", text), f"{module} must exec {binary}, not run it as a child"
    assert binary in text


def test_allow_lists_are_not_stale() -> None:
    for name in COMPOSE_ONLY:
        assert name in COMPOSE, f"{name} is allow-listed as compose-only but is not a compose service"
        assert name not in NATIVE, f"{name} is allow-listed as compose-only but has a native program: drop it"
    for name in NATIVE_ONLY:
        assert name in NATIVE and name not in COMPOSE, f"stale native-only entry {name}"


def test_python_services_copy_their_entry_package() -> None:
    """A `python -m pkg.module` service's image must contain pkg (COPY pkg/ in its Dockerfile)."""
    for name, (compose_file, definition) in COMPOSE.items():
        dockerfile = service_dockerfile(definition)
        argv = compose_argv(definition)
        if dockerfile is None or not argv or not entry_point(argv).startswith("python -m "):
            continue
        package = entry_point(argv).removeprefix("python -m ").split(".")[0]
        copied = {
            source.rstrip("/").split("/")[0] for sources, _ in parse_dockerfile(dockerfile).copies for source in sources
        }
        assert package in copied, f"{name} ({compose_file}) runs {package}.*, but {dockerfile.name} does not copy it"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["${MLOPS_VENV}/bin/python", "-m", "server.api"], "python -m server.api"),
        (["python3.11", "-m", "reporting.deployments", "--once"], "python -m reporting.deployments"),
        (["/opt/venv/bin/mlflow", "server", "--host", "0.0.0.0"], "mlflow server"),
        (["prefect", "server", "start", "--port", "4200"], "prefect server start"),
        (["moto_server", "-H", "0.0.0.0", "-p", "4566"], "moto_server"),
        (["/bin/prometheus", "--config.file=x"], "prometheus"),
        (["/usr/sbin/nginx", "-c", "x", "-g", "daemon off;"], "nginx"),
    ],
)
def test_entry_point_normalisation(argv: list[str], expected: str) -> None:
    assert entry_point(argv) == expected


def test_supervisord_parsing_reads_multiline_commands(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "[supervisord]\nlogfile=%(ENV_X)s/log\n\n[program:a]\n"
        "command=%(ENV_MLOPS_VENV)s/bin/mlflow server --port 1\n"
        "    --backend-store-uri sqlite:///%(ENV_S)s/db\nautostart=true\n\n[program:b]\n"
        "command=%(ENV_MLOPS_VENV)s/bin/python -m server.kinesis\n"
    )
    programs = native_programs(conf)
    assert programs["a"][-2:] == ["--backend-store-uri", "sqlite:///${S}/db"]
    assert entry_point(programs["a"]) == "mlflow server"
    assert entry_point(programs["b"]) == "python -m server.kinesis"


def test_the_consumer_groups_size_has_one_default_in_both_runtimes() -> None:
    """Natively supervisord's numprocs comes from the setting; compose scales serve-kinesis from the Makefile."""
    from mlops.scale_settings import ScaleSettings

    default = ScaleSettings.model_fields["kinesis_consumers"].default
    makefile = (REPO / "Makefile").read_text()
    assert f"KINESIS_CONSUMERS ?= {default}" in makefile
    assert makefile.count("--scale serve-kinesis=$(KINESIS_CONSUMERS)") == 2  # setup-model-serve and start-serve
    conf = (REPO / "native" / "supervisord.conf").read_text()
    assert "numprocs=%(ENV_MLOPS_KINESIS_CONSUMERS)s" in conf
    assert "--group-member %(process_num)d" in conf
    assert '"--group-member", "0"' in (REPO / "server" / "Dockerfile-serve-kinesis").read_text()
