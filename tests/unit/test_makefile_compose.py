"""The Makefile's compose targets call `docker compose` with the right files and env file.

No Docker engine runs here, so a stub `docker` first on PATH records every argv (one JSON line per call) and
succeeds; `make RUNTIME=compose <target> env=local` then runs for real and the recorded calls are checked.
This is the one place a stub is right: what is tested is the Makefile's command line, not Docker.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.compose import REPO, load_compose

REGISTRY = "docker-compose-model-registry.yml"
SERVE = "docker-compose-serve.yml"
MAKEFILE = REPO / "Makefile"

# Which compose file(s) each target drives.
TARGET_FILES = {
    "setup-model-registry": {REGISTRY},
    "init_aws": {REGISTRY},
    "apply-model-train-flow": {REGISTRY},
    "setup-model-serve": {SERVE},
    "apply-prediction-reporting": {REGISTRY, SERVE},  # report-deployment (serve) + nginx (registry)
    "stop-serve": {SERVE},
    "start-serve": {SERVE},
    "reset_all": {REGISTRY, SERVE},
    "down": {REGISTRY, SERVE},
}
# Targets that start containers of our images: the shared base image is built first (Dockerfile.base).
STARTS_OUR_IMAGES = {
    "setup-model-registry",
    "init_aws",
    "apply-model-train-flow",
    "setup-model-serve",
    "apply-prediction-reporting",
    "start-serve",
}


STUB = """#!/bin/sh
# Records its argv as one JSON line, then succeeds (prints nothing; `docker info` exits with $STUB_INFO_RC).
exec "{python}" -c 'import json, os, sys
with open(os.environ["DOCKER_STUB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["info"]:
    sys.exit(int(os.environ.get("STUB_INFO_RC", "0")))' "$@"
"""


def run_make(tmp_path: Path, *args: str, info_rc: int = 0) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(STUB.format(python=sys.executable))
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker-calls.jsonl"
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DOCKER_STUB_LOG": str(log),
        "STUB_INFO_RC": str(info_rc),
        "MAKEFLAGS": "",
        "STATE_DIR": str(tmp_path / "state"),  # never the developer's own .mlops
    }
    for name in ("ENV", "RUNTIME", "RUN_ID", "AWS_ENDPOINT_URL", "DOCKER", "DOCKER_HOST", "COMPOSE"):
        env.pop(name, None)
    # The stub knows no containers: docker/wait-healthy.sh (tested for real by tests/e2e/test_compose.py) is skipped.
    result = subprocess.run(
        ["make", "--no-print-directory", "WAIT_HEALTHY=:", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def compose_calls(calls: list[list[str]]) -> list[list[str]]:
    """`docker compose ...` calls, less the `docker compose version` probe that picks the compose tool."""
    return [call[1:] for call in calls if call[:1] == ["compose"] and call[1:] != ["version"]]


def option_values(call: list[str], *names: str) -> list[str]:
    values = []
    for i, word in enumerate(call):
        if word in names and i + 1 < len(call):
            values.append(call[i + 1])
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                values.append(word.split("=", 1)[1])
    return values


def global_part(call: list[str]) -> list[str]:
    """The options before the compose subcommand (up, down, stop, run, ...)."""
    words, i = [], 0
    while i < len(call) and call[i].startswith("-"):
        takes_value = call[i] in ("-f", "--file", "--env-file", "-p", "--project-name", "--profile")
        words.extend(call[i : i + 1 + takes_value])
        i += 1 + takes_value
    return words


@pytest.mark.parametrize("target", sorted(TARGET_FILES))
@pytest.mark.parametrize("env", ["local", "cloud"])
def test_compose_target_uses_its_files_and_env_file(tmp_path: Path, target: str, env: str) -> None:
    calls = compose_calls(run_make(tmp_path, "RUNTIME=compose", target, f"env={env}"))
    assert calls, f"make {target} called no `docker compose`"
    files_used: set[str] = set()
    for call in calls:
        head = global_part(call)
        assert option_values(head, "--env-file") == [f".env.{env}"], f"{target}: {call}"
        files = option_values(head, "-f", "--file")
        assert len(files) == 1, f"{target}: one compose file per call (two projects), got {call}"
        files_used.update(files)
    assert files_used == TARGET_FILES[target], f"{target} used {files_used}"


def services_named(call: list[str]) -> list[str]:
    """The services a compose call names: `up -d --wait a b` -> [a, b]; `run --rm -v x:y a cmd` -> [a];
    `up -d --scale a=2` -> [a]."""
    rest = call[len(global_part(call)) :]
    subcommand, words = rest[0], rest[1:]
    takes_value = {"-v", "--volume", "-e", "--env", "-w", "--workdir", "-u", "--user", "--timeout", "-t"}
    names, i = [], 0
    while i < len(words):
        if words[i] == "--scale":  # --scale serve-kinesis=2 names a service too
            names.append(words[i + 1].split("=", 1)[0])
            i += 2
            continue
        if words[i].startswith("-"):
            i += 2 if words[i] in takes_value else 1
            continue
        names.append(words[i])
        if subcommand in ("run", "exec"):
            break  # what follows is the command run in the container
        i += 1
    return names


@pytest.mark.parametrize("target", sorted(TARGET_FILES))
def test_compose_calls_name_existing_services(tmp_path: Path, target: str) -> None:
    for call in compose_calls(run_make(tmp_path, "RUNTIME=compose", target, "env=local", "DATA=features.yaml")):
        compose_file = option_values(global_part(call), "-f")[0]
        services = load_compose(compose_file)["services"]
        for name in services_named(call):
            assert name in services, f"make {target}: {call} names {name!r}, not a service of {compose_file}"


@pytest.mark.parametrize("target", sorted(STARTS_OUR_IMAGES))
def test_base_image_is_built_before_compose_starts_our_images(tmp_path: Path, target: str) -> None:
    calls = run_make(tmp_path, "RUNTIME=compose", target, "env=local")
    builds = [
        i
        for i, call in enumerate(calls)
        if call[:1] in (["build"], ["buildx"])
        and "Dockerfile.base" in option_values(call, "-f", "--file")
        and "churn-mlops/base:local" in option_values(call, "-t", "--tag")
    ]
    first_compose = next(i for i, call in enumerate(calls) if call[:1] == ["compose"] and call[1:] != ["version"])
    assert builds and builds[0] < first_compose, f"{target}: build Dockerfile.base first; calls: {calls}"


def test_stopping_the_serving_side_keeps_state(tmp_path: Path) -> None:
    for target in ("stop-serve", "down"):
        for call in compose_calls(run_make(tmp_path, "RUNTIME=compose", target, "env=local")):
            assert "-v" not in call and "--volumes" not in call, f"{target} must keep the named volumes: {call}"


def test_reset_all_removes_the_volumes(tmp_path: Path) -> None:
    calls = compose_calls(run_make(tmp_path, "RUNTIME=compose", "reset_all", "env=local"))
    downs = [call for call in calls if "down" in call]
    assert {option_values(global_part(c), "-f")[0] for c in downs} == {REGISTRY, SERVE}
    assert all("-v" in c or "--volumes" in c for c in downs), downs


def test_runtime_is_detected_from_docker_info(tmp_path: Path) -> None:
    calls = run_make(tmp_path, "stop-serve", "env=local", info_rc=0)
    assert ["info"] in calls or any(c[:1] == ["info"] for c in calls), "RUNTIME is detected with `docker info`"
    assert compose_calls(calls), "docker info succeeded: the compose runtime is used"


def _made_value(name: str, env: dict[str, str], *args: str) -> str:
    """What the Makefile exports as `name`, as its recipes see it."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "--eval", "show-%: ; @echo $$$*", f"show-{name}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_cloud_secrets_come_from_the_environment_else_the_vms_file(tmp_path: Path) -> None:
    """`make start-serve env=cloud` over SSH (the deploy) finds the control-plane secrets in CLOUD_SECRETS_FILE."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text("DRIFT_SERVICE_KEY ?= from-the-vm-file\n")
    env = {k: v for k, v in os.environ.items() if k != "DRIFT_SERVICE_KEY"}
    args = ("env=cloud", "RUNTIME=native", f"CLOUD_SECRETS_FILE={secrets}")
    assert _made_value("DRIFT_SERVICE_KEY", env, *args) == "from-the-vm-file"
    assert _made_value("DRIFT_SERVICE_KEY", {**env, "DRIFT_SERVICE_KEY": "from-env"}, *args) == "from-env"
    assert _made_value("DRIFT_SERVICE_KEY", env, "env=cloud", "RUNTIME=native", "CLOUD_SECRETS_FILE=/nonexistent") == ""
