"""Throwaway servers on free loopback ports, for the integration tests (tests/conftest.py) and the benchmarks
(bench/): moto (S3 + Kinesis), MLflow (SQLite backend, local artifacts) and Prefect, started in parallel, each in
its own process group so stopping one stops its children too.

One copy of this start-up: the tests and the benchmarks must run the servers the way `make up` does
(native/supervisord.conf), with the same environment (`MLFLOW_SERVER_ENV`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from mlops.settings import PROJECT_ROOT
from native.runtime import MLFLOW_SERVER_ENV

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_run(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive ports all free on 127.0.0.1 right now (a group's members listen on
    base + i)."""
    for _ in range(attempts):
        base = free_port()
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1 after {attempts} tries")


def start_process(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
    """Start a server in its own process group (so stopping it stops its children), its output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM to the process group, SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""


def wait_for_http(
    url: str, timeout: float, process: subprocess.Popen[Any] | None = None, log: Path | None = None
) -> None:
    """Poll `url` until it answers below 500; fail early (with the log's tail) if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}:\n{_tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{_tail(log)}")


@dataclass
class RegistryServers:
    moto_url: str
    mlflow_url: str
    prefect_url: str  # without /api
    state_dir: Path
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


def start_registry_servers(
    state: Path, timeout: float = 180, secrets: Mapping[str, str] | None = None
) -> RegistryServers:
    """moto, MLflow and Prefect with their state (and logs, in `state/logs`) under `state`; ready when returned.
    Stops what it started if one of them does not come up.

    `secrets` (names as in the environment: MLFLOW_ADMIN_PASSWORD, MLFLOW_TRACKING_USERNAME/_PASSWORD,
    MLFLOW_READER_PASSWORD, PREFECT_API_AUTH_STRING) turn the control planes' authentication on, as `make up` does
    with its secrets file; without them both servers run open, as with env=local and no secrets."""
    given = dict(secrets or {})
    auth_env = {**given, "STATE_DIR": str(state)}
    if given.get("PREFECT_API_AUTH_STRING"):
        auth_env["PREFECT_SERVER_API_AUTH_STRING"] = given["PREFECT_API_AUTH_STRING"]
    logs = state / "logs"
    (state / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    moto_port, mlflow_port, prefect_port = free_port(), free_port(), free_port()
    found = RegistryServers(
        f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}", state
    )
    commands: list[tuple[str, list[str], dict[str, str], str]] = [
        ("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], {}, "/moto-api/"),
        (
            "mlflow",
            [
                *(sys.executable, "-m", "mlops.mlflow_server", "--host", "127.0.0.1", "--port", str(mlflow_port)),
                *("--workers", "1", "--backend-store-uri", f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"),
                *("--artifacts-destination", str(state / "mlflow" / "artifacts")),
            ],
            {**MLFLOW_SERVER_ENV, **auth_env},
            "/health",
        ),
        (
            "prefect",
            [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            {
                "PREFECT_HOME": str(state / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
                **auth_env,
            },
            "/api/health",
        ),
    ]
    urls = [found.moto_url, found.mlflow_url, found.prefect_url]
    try:
        for name, command, env, _ in commands:
            found.processes.append(start_process(command, logs / f"{name}.log", env))
        for (name, _, _, health), process, url in zip(commands, found.processes, urls, strict=True):
            wait_for_http(url + health, timeout, process, logs / f"{name}.log")
        if given.get("MLFLOW_ADMIN_PASSWORD"):  # /health answers before the launcher has made the users
            _wait_for_mlflow_users(found, given, timeout, found.processes[1], logs / "mlflow.log")
    except BaseException:
        found.stop()
        raise
    return found


def _wait_for_mlflow_users(
    found: RegistryServers, secrets: Mapping[str, str], timeout: float, process: subprocess.Popen[Any], log: Path
) -> None:
    user = (secrets.get("MLFLOW_TRACKING_USERNAME", ""), secrets.get("MLFLOW_TRACKING_PASSWORD", ""))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MLflow exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{found.mlflow_url}/api/2.0/mlflow/users/current", auth=user, timeout=2).ok:
                return
        time.sleep(0.3)
    raise TimeoutError(f"MLflow's users not ready after {timeout}s:\n{_tail(log)}")


@dataclass
class SparkCluster:
    master_url: str  # spark://127.0.0.1:PORT, what drivers connect to
    webui_url: str  # the master's UI; /json/ lists its workers
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


def start_spark_cluster(state: Path, workers: int = 2, timeout: float = 120) -> SparkCluster:
    """A Spark standalone master and `workers` workers (1 core each) through `python -m batch.spark_cluster`, the
    launcher supervisord runs; ready when every worker is ALIVE at the master."""
    master_port = free_port()
    webui_port = free_port_run(workers + 1)  # the master's UI, then each worker's on webui + 1 + i
    env = {
        "STATE_DIR": str(state),
        "SPARK_MASTER_PORT": str(master_port),
        "SPARK_WEBUI_PORT": str(webui_port),
        "SPARK_WORKER_CORES": "1",
    }
    found = SparkCluster(f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{webui_port}")
    from batch.spark_cluster import alive_workers

    launcher = [sys.executable, "-m", "batch.spark_cluster"]
    try:
        found.processes.append(start_process([*launcher, "master"], state / "logs" / "spark-master.log", env))
        wait_for_http(f"{found.webui_url}/json/", timeout, found.processes[0], state / "logs" / "spark-master.log")
        for i in range(workers):
            log = state / "logs" / f"spark-worker-{i}.log"
            found.processes.append(start_process([*launcher, "worker", "--index", str(i)], log, env))
        deadline = time.monotonic() + timeout
        while len(alive := alive_workers(found.webui_url)) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in found.processes):
                raise RuntimeError(f"{len(alive)} of {workers} Spark workers alive:\n{_tail(log)}")
            time.sleep(0.5)
    except BaseException:
        found.stop()
        raise
    return found
