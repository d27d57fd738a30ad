"""Reading the compose files, the Dockerfiles and supervisord.conf: what each service or program starts."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

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
