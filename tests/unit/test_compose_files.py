"""The compose deployment, checked offline (no Docker engine here).

- both compose files validate against the compose specification (check-jsonschema's vendored schema,
  no network);
- every image is pinned; every service has a health check; every depends_on waits for service_healthy;
- state lives in named volumes; only the API is published beyond 127.0.0.1; the design's ports;
- no secret value in the files; our images run as a non-root user, built on the one shared base;
- every path a Dockerfile copies and every file a compose file builds from or mounts exists in the repository.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops.local_secrets import LOCAL_SECRETS
from tests.support.compose import (
    COMPOSE_FILES,
    REPO,
    all_services,
    compose_argv,
    entry_point,
    load_compose,
    parse_dockerfile,
    service_dockerfile,
)
from tests.support.jsonschema import check_jsonschema

SERVICES = all_services()
BASE_DOCKERFILE = REPO / "Dockerfile.base"
# Published ports (host side) as in the original design; everything else stays on the compose network.
EXPECTED_PORTS = {
    "moto": "127.0.0.1:${HOST_PORT_MOTO:-4566}:4566",
    "mlflow": "127.0.0.1:${HOST_PORT_MLFLOW:-5051}:5051",
    "prefect": "127.0.0.1:${HOST_PORT_PREFECT:-4200}:4200",
    "nginx": "127.0.0.1:${HOST_PORT_REPORTS:-8888}:8888",
    # the one port meant for clients: the gateway in front of the API's replicas (which publish none, so they scale)
    "api-gateway": "${HOST_PORT_API:-9696}:9696",
    "drift-service": "127.0.0.1:${HOST_PORT_DRIFT:-8085}:8085",
    "prometheus": "127.0.0.1:${HOST_PORT_PROMETHEUS:-9091}:9091",
    "alertmanager": "127.0.0.1:${HOST_PORT_ALERTMANAGER:-9093}:9093",
    "alert-receiver": "127.0.0.1:${HOST_PORT_ALERT_RECEIVER:-9095}:9095",
    "grafana": "127.0.0.1:${HOST_PORT_GRAFANA:-3000}:3000",
    "mongo": "127.0.0.1:${HOST_PORT_MONGO:-27018}:27017",
}
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|AUTH)", re.IGNORECASE)
# a secret compose refuses to start without (docker-compose v1 and v2 both read `${NAME:?message}`)
REQUIRED_SECRET = re.compile(r"\$\{[A-Z_]+:\?[^}]+\}")
# what the Makefile exports (mlops/local_secrets.py makes them for env=local)
SECRETS = {name: f"secret-{i}" for i, name in enumerate(LOCAL_SECRETS)}


# ------------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_compose_file_validates_against_compose_spec(compose_file: str) -> None:
    result = check_jsonschema("vendor.compose-spec", REPO / compose_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validation_is_not_vacuous(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose-broken.yml"
    broken.write_text("services:\n  api:\n    image: x:1\n    helthcheck:\n      test: [CMD, 'true']\n")
    result = check_jsonschema("vendor.compose-spec", broken)
    assert result.returncode != 0
    assert "helthcheck" in result.stdout + result.stderr


def test_both_files_share_one_network_and_the_reports_volume() -> None:
    registry, serve = (load_compose(name) for name in COMPOSE_FILES)
    assert registry["networks"]["default"]["name"] == serve["networks"]["default"]["name"]
    assert registry["volumes"]["reports"]["name"] == serve["volumes"]["reports"]["name"]
    # the registry side creates and removes them; the serving side only joins (else its `down` fails while in use)
    assert not registry["networks"]["default"].get("external") and not registry["volumes"]["reports"].get("external")
    assert serve["networks"]["default"]["external"] is True and serve["volumes"]["reports"]["external"] is True
    # docker-compose v1 rejects a top-level `name:`; the Makefile names the two projects with -p instead
    assert "name" not in registry and "name" not in serve
    makefile = (REPO / "Makefile").read_text()
    projects = dict(re.findall(r"^(REGISTRY_PROJECT|SERVE_PROJECT) := (\S+)$", makefile, re.M))
    assert len(set(projects.values())) == 2, "two projects: stopping the serving side leaves the registry up"


# ------------------------------------------------------------------------------------------------ services


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_is_pinned(name: str) -> None:
    compose_file, definition = SERVICES[name]
    image = definition.get("image")
    assert image, f"{name} ({compose_file}): give every service an explicit image name"
    if "build" in definition:
        assert re.fullmatch(r"churn-mlops/[a-z-]+:\$\{IMAGE_TAG:-local\}", image), (
            f"{name}: name our images churn-mlops/<name>:${{IMAGE_TAG:-local}}, not {image!r}"
        )
    else:
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: pin {image!r} to a version"


def test_emulator_image_matches_the_locked_moto() -> None:
    lock = (REPO / "uv.lock").read_text()
    locked = re.search(r'\[\[package\]\]\nname = "moto"\nversion = "([^"]+)"', lock)
    assert locked, "moto not in uv.lock"
    assert SERVICES["moto"][1]["image"] == f"motoserver/moto:{locked.group(1)}", (
        "the emulator image should run the moto version the native runtime and the tests use"
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_container_log_is_rotated(name: str) -> None:
    logging = SERVICES[name][1].get("logging") or {}
    assert logging.get("driver") == "json-file", f"{name}: no log rotation (logging: *logging)"
    assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 1, name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check(name: str) -> None:
    healthcheck = SERVICES[name][1].get("healthcheck")
    assert healthcheck and not healthcheck.get("disable"), f"{name}: no health check"
    test = healthcheck["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in healthcheck, f"{name}: set healthcheck.{key}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_waits_for_healthy_services_of_the_same_file(name: str) -> None:
    compose_file, definition = SERVICES[name]
    depends_on = definition.get("depends_on", {})
    assert isinstance(depends_on, dict), f"{name}: use the long depends_on form with condition: service_healthy"
    services_in_file = load_compose(compose_file)["services"]
    for dependency, spec in depends_on.items():
        assert spec.get("condition") == "service_healthy", f"{name} -> {dependency}: condition service_healthy"
        assert dependency in services_in_file, f"{name} -> {dependency}: not in {compose_file}"
        assert "healthcheck" in services_in_file[dependency], f"{dependency} has no health check to wait for"


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_state_lives_in_declared_named_volumes(compose_file: str) -> None:
    compose = load_compose(compose_file)
    declared = set(compose.get("volumes", {}))
    used: set[str] = set()
    for name, definition in compose["services"].items():
        for volume in definition.get("volumes", []):
            assert isinstance(volume, str) and ":" in volume, f"{name}: anonymous volume {volume!r}"
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert volume.endswith(":ro"), f"{name}: bind mount {volume!r} is config, mount it read-only"
            else:
                assert source in declared, f"{name}: volume {source!r} not declared under top-level volumes"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports(name: str) -> None:
    ports = SERVICES[name][1].get("ports", [])
    expected = EXPECTED_PORTS.get(name)
    assert ports == ([expected] if expected else []), f"{name}: publishes {ports}, expected {expected}"
    for port in ports:
        assert isinstance(port, str), f"{name}: quote port {port!r} (YAML base-60 trap)"


def test_only_the_api_listens_beyond_loopback() -> None:
    public = [
        (name, port)
        for name, (_, definition) in SERVICES.items()
        for port in definition.get("ports", [])
        if not port.startswith("127.0.0.1:")
    ]
    assert public == [("api-gateway", "${HOST_PORT_API:-9696}:9696")]


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_no_secret_values_in_compose_files(compose_file: str) -> None:
    compose = load_compose(compose_file)
    for name, definition in compose["services"].items():
        environment = definition.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use the mapping form of environment"
        for variable, value in environment.items():
            if SECRET_NAME.search(variable):
                assert value is None or REQUIRED_SECRET.fullmatch(str(value)), (
                    f"{name}: {variable} must pass through from the shell (or be `${{NAME:?why}}`), not be set here"
                )
            for password in re.findall(r"://[^:/@]*:([^@]+)@", str(value or "")):
                assert REQUIRED_SECRET.fullmatch(password), f"{name}: {variable} holds a password that is not ${{X:?}}"
    text = (REPO / compose_file).read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id in a compose file"
    assert "env_file" not in text, "settings come from `docker compose --env-file .env.<env>` interpolation"


def test_cloud_has_no_endpoint_override() -> None:
    """The emulator unless .env.<env> sets CONTAINER_AWS_ENDPOINT_URL, which .env.cloud sets empty (real AWS)."""
    for name, (_, definition) in SERVICES.items():
        environment = definition.get("environment", {})
        for variable in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
            if variable in environment:
                assert environment[variable] == "${CONTAINER_AWS_ENDPOINT_URL-http://moto:4566}", (name, variable)
    assert re.search(r"^CONTAINER_AWS_ENDPOINT_URL=$", (REPO / ".env.cloud").read_text(), re.M)


def _compose_v1() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose (v1) not found: run `make system-packages` as root (Debian's docker-compose)")
    return found


@pytest.mark.parametrize("env", ["local", "cloud"])
@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_docker_compose_v1_accepts_the_file_and_resolves_the_endpoint(compose_file: str, env: str) -> None:
    """docker-compose 1.29 is stricter than v2 (no top-level name, no ${VAR:+alt}): both must read our files."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONTAINER_", "HOST_PORT_"))}
    clean.update(SECRETS)
    result = subprocess.run(
        [_compose_v1(), "--env-file", f".env.{env}", "-f", compose_file, "config"],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    endpoints = {
        definition["environment"].get("AWS_ENDPOINT_URL")
        for definition in resolved["services"].values()
        if "AWS_ENDPOINT_URL" in definition.get("environment", {})
    }
    assert endpoints == ({"http://moto:4566"} if env == "local" else {""}), endpoints


def _required_secrets(compose_file: str) -> set[str]:
    values = yaml.safe_dump(load_compose(compose_file)["services"])  # the values, not the comments
    return set(re.findall(r"\$\{([A-Z_]+):\?", values))


def test_every_control_plane_secret_is_required_where_it_is_used() -> None:
    """Compose starts nothing without them (env=local: the Makefile's STATE_DIR/secrets.env; cloud: the deploy's)."""
    registry, serve = (_required_secrets(name) for name in COMPOSE_FILES)
    assert registry | serve == set(LOCAL_SECRETS), set(LOCAL_SECRETS) ^ (registry | serve)
    # MLflow's admin and the writer only where the registry runs; Grafana's only beside Grafana
    assert {"MLFLOW_ADMIN_PASSWORD", "MLFLOW_TRACKING_PASSWORD"} <= registry - serve
    assert "GRAFANA_ADMIN_PASSWORD" in serve - registry


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_docker_compose_v1_refuses_a_missing_secret_by_name(compose_file: str) -> None:
    missing = sorted(_required_secrets(compose_file))[0]
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | {k: v for k, v in SECRETS.items() if k != missing}
    result = subprocess.run(
        [_compose_v1(), "--env-file", ".env.local", "-f", compose_file, "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "make exports it" in result.stderr, result.stderr


def test_the_serving_side_reads_mlflow_as_the_reader_and_the_registry_side_writes_as_the_writer() -> None:
    registry, serve = (load_compose(name) for name in COMPOSE_FILES)
    writer = registry["x-mlops-environment"]
    reader = serve["x-mlops-environment"]
    assert writer["MLFLOW_TRACKING_USERNAME"].startswith("${MLFLOW_TRACKING_USERNAME:?")
    assert writer["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_TRACKING_PASSWORD:?")
    assert reader["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_READER_USERNAME:-mlops-reader}"
    assert reader["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_READER_PASSWORD:?")
    mlflow = registry["services"]["mlflow"]
    assert mlflow["environment"]["MLFLOW_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert mlflow["healthcheck"]["test"][1:4] == ["python", "-m", "mlops.mlflow_server"], "readiness = writer logs in"
    assert "--check" in mlflow["healthcheck"]["test"]
    for uri in (writer["ONLINE_STORE_URI"], reader["ONLINE_STORE_URI"]):
        assert uri.startswith("redis://:${REDIS_PASSWORD:?"), uri
    for uri in (writer["PREDICTION_LOG_URI"], reader["PREDICTION_LOG_URI"]):
        assert uri.startswith("mongodb://mlops:${MONGO_PASSWORD:?") and uri.endswith("?authSource=admin"), uri
    redis = serve["services"]["redis"]["command"]
    assert redis[redis.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert redis[redis.index("--protected-mode") + 1] == "yes"


def test_clients_reach_only_the_api_and_the_aws_endpoint() -> None:
    registry, serve = (load_compose(name) for name in COMPOSE_FILES)
    on_edge = {
        name
        for compose in (registry, serve)
        for name, definition in compose["services"].items()
        if "edge" in definition.get("networks", [])
    }
    assert on_edge == {"moto", "api-gateway", "send-data-api", "send-data-kinesis"}
    assert serve["networks"]["edge"]["name"] == registry["networks"]["edge"]["name"]
    assert serve["networks"]["edge"]["external"] is True and not registry["networks"]["edge"].get("external")
    for client in ("send-data-api", "send-data-kinesis"):
        definition = serve["services"][client]
        assert definition["networks"] == ["edge"], client
        control_plane = [v for v in definition["environment"] if v.startswith(("MLFLOW", "PREFECT", "DRIFT", "MONGO"))]
        assert not control_plane and "ONLINE_STORE_URI" not in definition["environment"], (client, control_plane)


# ------------------------------------------------------------------------------------------------ images


def _our_dockerfiles() -> list[Path]:
    files = {service_dockerfile(definition) for _, definition in SERVICES.values()} - {None}
    return sorted({BASE_DOCKERFILE, *files})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(n for n, (_, d) in SERVICES.items() if "build" in d))
def test_built_service_has_its_dockerfile_and_context(name: str) -> None:
    definition = SERVICES[name][1]
    build = definition["build"]
    assert (REPO / build["context"]).is_dir()
    dockerfile = service_dockerfile(definition)
    assert dockerfile is not None and dockerfile.is_file(), f"{name}: {dockerfile} missing"
    # the Spark services' base is the shared base built from the same Dockerfile.base with a JRE and pyspark
    base = "base-spark" if dockerfile.name == "Dockerfile-spark" else "base"
    assert build.get("args", {}).get("BASE_IMAGE") == f"churn-mlops/{base}:${{IMAGE_TAG:-local}}"


def test_base_image_is_built_from_the_lock_file_as_non_root() -> None:
    base = parse_dockerfile(BASE_DOCKERFILE)
    text = BASE_DOCKERFILE.read_text()
    assert "uv sync --frozen" in text and "--no-dev" in text
    assert (["pyproject.toml", "uv.lock"], "./") in base.copies
    assert base.users and base.users[-1] not in ("root", "0", "0:0"), "the base image must end as non-root"
    for image in base.froms:
        assert ":" in image and not image.endswith(":latest"), f"pin {image}"


@pytest.mark.parametrize("dockerfile", _our_dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_service_images_build_on_the_shared_base_and_stay_non_root(dockerfile: Path) -> None:
    if dockerfile == BASE_DOCKERFILE:
        return
    parsed = parse_dockerfile(dockerfile)
    assert parsed.froms == ["${BASE_IMAGE}"], f"{dockerfile}: FROM ${{BASE_IMAGE}} (the shared base)"
    assert "ARG BASE_IMAGE=churn-mlops/base:local" in dockerfile.read_text()
    assert all(user not in ("root", "0", "0:0") for user in parsed.users), f"{dockerfile} switches to root"
    assert parsed.cmd, f"{dockerfile}: a CMD, the same entry point as the native program"


def _dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) for pattern in patterns for prefix in prefixes)


def _copy_sources() -> list[tuple[Path, str]]:
    return [
        (dockerfile, source)
        for dockerfile in _our_dockerfiles()
        for sources, _ in parse_dockerfile(dockerfile).copies
        for source in sources
    ]


@pytest.mark.parametrize(
    ("dockerfile", "source"),
    _copy_sources(),
    ids=lambda value: str(value.relative_to(REPO)) if isinstance(value, Path) else value,
)
def test_every_copied_path_exists_and_reaches_the_build_context(dockerfile: Path, source: str) -> None:
    assert (REPO / source).exists(), f"{dockerfile.relative_to(REPO)} copies {source}, which does not exist"
    assert not _dockerignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_env_files_out() -> None:
    for path in (".venv", ".mlops", ".git", ".env.local", ".env.cloud", "tests"):
        assert _dockerignored(path), f"{path} would be sent to the Docker build context"
    for path in ("pyproject.toml", "uv.lock", "features.yaml", "mlops/settings.py"):
        assert not _dockerignored(path), f"{path} is needed by the images"


# ------------------------------------------------------------------------------------------------ mounts


def _bind_mounts() -> list[tuple[str, str]]:
    mounts = []
    for name, (_, definition) in sorted(SERVICES.items()):
        for volume in definition.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                mounts.append((name, source.removeprefix("./")))
    return mounts


def _files_inside_mounts() -> list[tuple[str, str]]:
    """Files a service reads from a mounted folder (by its command line or its image's conventions)."""
    return [
        (
            "prometheus",
            "monitoring/prometheus/prometheus.yml",
        ),  # --config.file=/etc/prometheus/prometheus.yml
    ]


@pytest.mark.parametrize(
    ("service", "path"),
    [pytest.param(s, p, id=f"{s}:{p}") for s, p in _bind_mounts() + _files_inside_mounts()],
)
def test_every_mounted_path_exists(service: str, path: str) -> None:
    assert (REPO / path).exists(), f"{service} mounts {path}, which does not exist in the repository"


def test_nginx_template_is_in_the_mounted_folder() -> None:
    templates = list((REPO / "reporting" / "nginx").glob("*.template"))
    assert templates, "reporting/nginx holds no *.template for the nginx image's envsubst"
    assert any("8888" in t.read_text() or "${REPORTS_PORT}" in t.read_text() for t in templates)


def test_prometheus_command_reads_the_mounted_config() -> None:
    definition = SERVICES["prometheus"][1]
    assert "--config.file=/etc/prometheus/prometheus.yml" in definition["command"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in definition["volumes"]


# ------------------------------------------------------------------------------------------------ imports

FIRST_PARTY = {"mlops", "server", "model_orchestration", "monitoring", "reporting", "simulation_business", "batch"}


def _module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _first_party_closure(module: str) -> tuple[set[str], set[str]]:
    """(first-party modules `python -m module` imports, transitively; those not found in the repository)."""
    seen: set[str] = set()
    missing: set[str] = set()
    todo = [module]
    if (REPO.joinpath(*module.split(".")) / "__main__.py").is_file():
        todo.append(f"{module}.__main__")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            missing.add(name)
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{node.module}" if node.module else parent
                else:
                    base = node.module or ""
                found = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in found:
                if imported.split(".")[0] in FIRST_PARTY and (_module_file(imported) or imported == base):
                    todo.append(imported)
        # parent packages run their __init__ on import
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return seen - missing, missing


def _python_services() -> list[tuple[str, str, Path]]:
    services = []
    for name, (_, definition) in sorted(SERVICES.items()):
        dockerfile = service_dockerfile(definition)
        argv = compose_argv(definition)
        if dockerfile is not None and argv and entry_point(argv).startswith("python -m "):
            services.append((name, entry_point(argv).removeprefix("python -m "), dockerfile))
    return services


@pytest.mark.parametrize(
    ("service", "module", "dockerfile"),
    [pytest.param(s, m, d, id=s) for s, m, d in _python_services()],
)
def test_image_contains_every_first_party_module_its_entry_point_imports(
    service: str, module: str, dockerfile: Path
) -> None:
    imported, missing = _first_party_closure(module)
    assert module in imported or f"{module}.__main__" in imported, f"{service}: {module} not found"
    copied = {
        source.rstrip("/").split("/")[0] for sources, _ in parse_dockerfile(dockerfile).copies for source in sources
    }
    packages = {name.split(".")[0] for name in imported}
    assert packages <= copied, f"{service}: {dockerfile.name} must also COPY {sorted(packages - copied)}"
    assert not missing - {module}, f"{service}: imports modules that do not exist: {sorted(missing)}"
