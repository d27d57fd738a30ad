"""Parity of the two runtimes: each compose service and its native program run the same entry point.

Reads both definitions (the compose files with PyYAML, native/supervisord.conf with configparser) and
compares, for every name, what process is started (`python -m server.api`, `mlflow server`, ...;
paths, hosts and ports may differ). A service that exists on one side only fails, apart from the
commented allow-list below.

The parsing helpers here (compose files, Dockerfiles, supervisord programs) are also used by
test_compose_files.py.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose-model-registry.yml", "docker-compose-serve.yml")
SUPERVISORD_CONF = REPO / "native" / "supervisord.conf"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def load_compose(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def all_services() -> dict[str, tuple[str, dict]]:
    """service name -> (compose file, definition) over both compose files."""
    services: dict[str, tuple[str, dict]] = {}
    for name in COMPOSE_FILES:
        for service, definition in load_compose(name)["services"].items():
            assert service not in services, f"service {service!r} defined in two compose files"
            services[service] = (name, definition)
    return services


# ----------------------------------------------------------------------------------------------- Dockerfiles


@dataclass
class Dockerfile:
    path: Path
    froms: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination), no --from
    users: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def _exec_form(argument: str) -> list[str]:
    argument = argument.strip()
    if argument.startswith("["):
        return json.loads(argument)
    return ["/bin/sh", "-c", argument]


def parse_dockerfile(path: Path) -> Dockerfile:
    parsed = Dockerfile(path)
    for line in _logical_lines(path.read_text()):
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parsed.froms.append(argument.split()[0])
        elif instruction in ("COPY", "ADD"):
            words = argument.strip()
            parts = json.loads(words) if words.startswith("[") else shlex.split(words)
            flags = [p for p in parts if p.startswith("--")]
            rest = [p for p in parts if not p.startswith("--")]
            if any(f.startswith("--from") for f in flags):
                continue  # from another stage or image, not from the build context
            parsed.copies.append((rest[:-1], rest[-1]))
        elif instruction == "USER":
            parsed.users.append(argument.strip())
        elif instruction == "CMD":
            parsed.cmd = _exec_form(argument)
        elif instruction == "ENTRYPOINT":
            parsed.entrypoint = _exec_form(argument)
    return parsed


def service_dockerfile(definition: dict) -> Path | None:
    build = definition.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def entrypoint_wrapper_execs_args(entrypoint: list[str]) -> bool:
    """Our Dockerfile ENTRYPOINTs only tidy the environment and `exec "$@"`: the command is what runs."""
    return len(entrypoint) >= 3 and entrypoint[:2] == ["/bin/sh", "-c"] and 'exec "$@"' in entrypoint[2]


def compose_argv(definition: dict) -> list[str] | None:
    """The argv a compose service runs: entrypoint + command, else the command, else its Dockerfile's CMD."""
    entrypoint = definition.get("entrypoint")
    command = definition.get("command")
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(command, str):
        command = shlex.split(command)
    if entrypoint:
        return [*entrypoint, *(command or [])]
    if command:
        return list(command)
    dockerfile = service_dockerfile(definition)
    if dockerfile is not None and dockerfile.exists():
        parsed = parse_dockerfile(dockerfile)
        if parsed.entrypoint and not entrypoint_wrapper_execs_args(parsed.entrypoint):
            return [*parsed.entrypoint, *(parsed.cmd or [])]
        return parsed.cmd
    return None


# ----------------------------------------------------------------------------------------------- supervisord

_SUPERVISOR_VAR = re.compile(r"%\(ENV_(\w+)\)s")


def native_programs(path: Path = SUPERVISORD_CONF) -> dict[str, list[str]]:
    """program name -> argv of its command (supervisord's %(ENV_X)s left as ${X})."""
    parser = configparser.RawConfigParser(strict=False)
    parser.read_string(path.read_text())
    programs: dict[str, list[str]] = {}
    for section in parser.sections():
        if section.startswith("program:"):
            command = _SUPERVISOR_VAR.sub(r"${\1}", parser.get(section, "command"))
            programs[section.removeprefix("program:")] = shlex.split(command.replace("\n", " "))
    return programs


_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


def entry_point(argv: list[str]) -> str:
    """What a process runs, independent of paths, ports and hosts.

    `python -m pkg.mod ...` -> "python -m pkg.mod"; `/x/bin/mlflow server --host ...` -> "mlflow server";
    `moto_server -H ...` -> "moto_server". Subcommands (words before the first option) are part of it.
    """
    if not argv:
        raise ValueError("empty command")
    program = Path(argv[0]).name
    if _PYTHON.match(program):
        if len(argv) >= 3 and argv[1] == "-m":
            return f"python -m {argv[2]}"
        raise ValueError(f"python without -m module: {argv}")
    words = [program]
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return " ".join(words)


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
}
# Native-only programs: none. (Add one with a comment if a native helper has no compose service by design.)
NATIVE_ONLY: dict[str, str] = {}
# Native launchers: a first-party module that renders a config for loopback and the state dir, then os.exec's the
# same binary the compose service runs (so supervisord manages that binary itself). Compared as that binary.
NATIVE_LAUNCHERS = {
    # renders monitoring/prometheus/prometheus.yml with 127.0.0.1 targets, execs Debian's prometheus
    "python -m monitoring.prometheus.native": "prometheus",
    # renders reporting/nginx/reports.conf.template in a non-root main config, execs Debian's nginx
    "python -m reporting.nginx_native": "nginx",
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
