"""Start, stop and watch the native runtime: the platform's services as processes under one supervisord.

`make up` / `make down` and the Makefile's native targets call this module. It exports the `MLOPS_*` variables
that native/supervisord.conf expands, starts supervisord if it is not running, starts the requested programs and
waits on each one's health check (an HTTP probe, not a sleep), naming the log file of any program that fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from batch.spark_cluster import alive_workers, webui_url
from mlops import mlflow_server
from mlops.control_plane_settings import CREDENTIAL_FIELDS
from mlops.settings import PROJECT_ROOT, Settings, load_settings

CONFIG = PROJECT_ROOT / "native" / "supervisord.conf"


@dataclass(frozen=True)
class Program:
    """A supervisord program and how to tell that it is ready."""

    name: str
    health_url: str | None  # None: "RUNNING" in supervisord is enough
    timeout_s: float = 90.0
    ready: Callable[[], bool] | None = None  # a further readiness check after the probe (MLflow: its users exist)
    members: int = 0  # supervisord's numprocs: processes <name>-0..N-1, member i probed on the health port + i

    def processes(self) -> list[tuple[str, str | None]]:
        """(supervisord name, health url) of each process; a group's members are `name:name-i`."""
        if not self.members:
            return [(self.name, self.health_url)]
        return [(f"{self.name}:{self.name}-{i}", _shift_port(self.health_url, i)) for i in range(self.members)]

    @property
    def namespec(self) -> str:
        """What supervisorctl's start/stop take: the whole group for a program with members."""
        return f"{self.name}:*" if self.members else self.name


def _port(url: str, default: int) -> int:
    return urlparse(url).port or default


def _shift_port(url: str | None, by: int) -> str | None:
    if url is None or not by:
        return url
    parts = urlparse(url)
    return parts._replace(netloc=f"{parts.hostname}:{(parts.port or 80) + by}").geturl()


def programs(settings: Settings) -> dict[str, Program]:
    moto = _port(settings.aws_endpoint_url or "http://127.0.0.1:4566", 4566)
    mlflow = _port(settings.mlflow_tracking_uri, 5051)
    prefect = _port(settings.prefect_api_url, 4200)
    spark_ui = webui_url(settings)
    listed = [
        Program("moto", f"http://127.0.0.1:{moto}/moto-api/"),
        Program(
            "mlflow",
            f"http://127.0.0.1:{mlflow}/health",
            120,
            lambda: mlflow_server.ready(settings, f"http://127.0.0.1:{mlflow}")[0],
        ),
        Program("prefect", f"http://127.0.0.1:{prefect}/api/health", 120),
        Program("train-deployment", None),
        Program("batch-deployment", None),
        Program(
            "predict-api", f"http://127.0.0.1:{settings.api_replica_port}/health", 120, members=settings.api_replicas
        ),
        Program("api-gateway", f"http://127.0.0.1:{settings.api_port}/health"),
        Program(
            "serve-kinesis",
            f"http://127.0.0.1:{settings.kinesis_metrics_port}/metrics",
            members=settings.kinesis_consumers,
        ),
        Program("drift-service", f"http://127.0.0.1:{settings.drift_port}/health"),
        Program("report-deployment", None),
        Program("prometheus", f"http://127.0.0.1:{settings.prometheus_port}/-/ready"),
        Program("alertmanager", f"http://127.0.0.1:{settings.alertmanager_port}/-/ready"),
        Program("alert-receiver", f"http://127.0.0.1:{settings.alert_receiver_port}/health"),
        Program("nginx", f"http://127.0.0.1:{settings.reports_port}/"),
        Program("send-data-api", None),
        Program("send-data-kinesis", None),
        Program("spark-master", f"{spark_ui}/json/"),
        Program(
            "spark-worker",
            f"http://127.0.0.1:{settings.spark_webui_port + 1}/json/",
            ready=lambda: len(alive_workers(spark_ui)) >= settings.spark_workers,  # registered at the master
            members=settings.spark_workers,
        ),
    ]
    return {p.name: p for p in listed}


REGISTRY = ("moto", "mlflow", "prefect")

# MLflow 3's server starts a job runner for its GenAI scorers (seven huey consumers polling their queues): measured
# idle on these 2-core machines it took 1.45 cores, which slowed every fit and every MLflow call beside it. The
# platform runs no MLflow jobs; every place that starts `mlflow server` sets this (supervisord via the native
# runtime's environment, mlflow/Dockerfile-mlflow, native/throwaway.py for the tests and benchmarks).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def runtime_environment(settings: Settings) -> dict[str, str]:
    """What supervisord.conf expands, plus the settings every child process reads."""
    env = dict(os.environ)
    env.update(
        {
            "MLOPS_STATE_DIR": str(settings.state_dir),
            "MLOPS_PROJECT_ROOT": str(PROJECT_ROOT),
            "MLOPS_VENV": str(Path(sys.executable).parent.parent),
            "MLOPS_MOTO_PORT": str(_port(settings.aws_endpoint_url or "http://127.0.0.1:4566", 4566)),
            "MLOPS_MLFLOW_PORT": str(_port(settings.mlflow_tracking_uri, 5051)),
            "MLOPS_MLFLOW_ARTIFACTS": str(settings.state_dir / "mlflow" / "artifacts"),
            "MLOPS_PREFECT_PORT": str(_port(settings.prefect_api_url, 4200)),
            "MLOPS_REPORTS_DIR": str(settings.reports_location),
            "MLOPS_KINESIS_CONSUMERS": str(settings.kinesis_consumers),
            "MLOPS_API_REPLICAS": str(settings.api_replicas),
            "MLOPS_SPARK_WORKERS": str(settings.spark_workers),
            "ENV": settings.env,
            "STATE_DIR": str(settings.state_dir),
            "PREFECT_API_URL": settings.prefect_api_url,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "PYTHONUNBUFFERED": "1",
        }
        | MLFLOW_SERVER_ENV  # supervisord's children inherit it: no MLflow job runner eating the cores
        | credentials_environment(settings)
    )
    return env


def credentials_environment(settings: Settings) -> dict[str, str]:
    """The control-plane secrets every program inherits (whether they came from the environment or .env.<env>),
    the Prefect server's own copy of the auth string, and the reader's MLflow credentials the read-only programs
    of supervisord.conf switch to (empty when MLflow runs open)."""
    env = {name.upper(): value for name in CREDENTIAL_FIELDS if (value := getattr(settings, name))}
    if settings.prefect_api_auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = settings.prefect_api_auth_string
    reader = settings.mlflow_admin_password and settings.mlflow_reader_password
    env["MLOPS_MLFLOW_READER_USERNAME"] = settings.mlflow_reader_username if reader else ""
    env["MLOPS_MLFLOW_READER_PASSWORD"] = settings.mlflow_reader_password or "" if reader else ""
    return env


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = runtime_environment(settings)
        self.logs = settings.state_dir / "logs"
        self.known = programs(settings)

    # ---------------------------------------------------------------- supervisord plumbing
    def _ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(CONFIG), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check)

    def supervisor_running(self) -> bool:
        socket = self.settings.state_dir / "supervisor.sock"
        return socket.exists() and self._ctl("pid").returncode == 0

    def ensure_supervisor(self) -> None:
        if self.supervisor_running():
            return
        for folder in ("logs", "mlflow/artifacts", "prefect", "reports", "model-cache"):
            (self.settings.state_dir / folder).mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(CONFIG)], env=self.env, check=True)
        deadline = time.monotonic() + 20
        while not self.supervisor_running():
            if time.monotonic() > deadline:
                raise SystemExit(f"supervisord did not start; see {self.logs / 'supervisord.log'}")
            time.sleep(0.2)

    def status(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for line in self._ctl("status").stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        return states

    def running(self, name: str, states: dict[str, str]) -> bool:
        """Every process of the program (each member of a group) is RUNNING in `states` (one `status` call)."""
        return all(states.get(process) == "RUNNING" for process, _ in self.known[name].processes())

    # ---------------------------------------------------------------- lifecycle
    def start(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self.known]
        if unknown:
            raise SystemExit(f"unknown program(s) {unknown}; known: {sorted(self.known)}")
        fresh = not self.supervisor_running()
        # supervisord autostarts the registry side, so on a fresh start those ports must be free too
        states = {} if fresh else self.status()
        self._refuse_taken_ports([*REGISTRY, *names] if fresh else [n for n in names if not self.running(n, states)])
        self.ensure_supervisor()
        states = self.status()
        for name in names:
            program = self.known[name]
            processes = [process for process, _ in program.processes()]
            missing = [process for process in processes if process not in states]
            if missing:
                raise SystemExit(
                    f"program '{name}' ({', '.join(missing)}) is not in the running supervisord: its definition in "
                    f"{CONFIG} or a group size (e.g. KINESIS_CONSUMERS) changed since it started; `make down` first"
                )
            if any(states[process] != "RUNNING" for process in processes):
                print(f"starting {name:<18} log: {self.logs / (name + '*.log')}", flush=True)
                self._ctl("start", program.namespec)
        for name in names:
            for process, url in self.known[name].processes():
                self.wait_healthy(self.known[name], process, url)

    def _refuse_taken_ports(self, names: Sequence[str]) -> None:
        """A port already served by a foreign process would pass the health probe and hide a dead program."""
        for name, url in ((n, url) for n in dict.fromkeys(names) for _, url in self.known[n].processes()):
            port = urlparse(url).port if url else None
            if port and _port_in_use(port):
                raise SystemExit(
                    f"port {port} for {name} is already in use by another process (an older runtime, or a service "
                    f"started by hand?): stop it, or move {name} to another port in .env.{self.settings.env}"
                )

    def wait_healthy(self, program: Program, process: str, url: str | None) -> None:
        """Until `process` (the program itself, or one member of its group) is RUNNING and answers `url`."""
        label = process.split(":")[-1]
        started = time.monotonic()
        deadline = started + program.timeout_s
        log = self.logs / f"{label}.log"
        while True:
            state = self.status().get(process, "UNKNOWN")
            if state in ("FATAL", "BACKOFF", "EXITED"):
                raise SystemExit(f"{label} failed to start ({state}); last lines of {log}:\n{_tail(log)}")
            if state == "RUNNING" and _probe(url) and (program.ready is None or program.ready()):
                print(f"  {label:<18} healthy after {time.monotonic() - started:4.1f}s", flush=True)
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{label} not healthy after {program.timeout_s:.0f}s "
                    f"(state {state}, probe {url}); last lines of {log}:\n{_tail(log)}"
                )
            time.sleep(0.5)

    def stop(self, names: Sequence[str]) -> None:
        if not self.supervisor_running():
            return
        for name in names:
            self._ctl("stop", self.known[name].namespec if name in self.known else name)

    def down(self) -> None:
        if not self.supervisor_running():
            print("native runtime is not running")
            return
        self._ctl("stop", "all")
        self._ctl("shutdown")
        deadline = time.monotonic() + 30
        while self.supervisor_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        print("native runtime stopped")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _probe(url: str | None) -> bool:
    if url is None:
        return True
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m native.runtime",
        description="Run the platform's services natively under supervisord (no Docker).",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start programs (default: the model registry side) and wait until healthy")
    up.add_argument("programs", nargs="*", default=list(REGISTRY))
    stop = sub.add_parser("stop", help="stop programs, leaving supervisord and the rest running")
    stop.add_argument("programs", nargs="+")
    sub.add_parser("down", help="stop every program and supervisord")
    sub.add_parser("status", help="print each program's state and where its log is")
    args = parser.parse_args(argv)

    runtime = Runtime(load_settings(args.env))
    if args.command == "up":
        runtime.start(args.programs)
        print(f"logs: {runtime.logs}/<program>.log")
    elif args.command == "stop":
        runtime.stop(args.programs)
    elif args.command == "down":
        runtime.down()
    else:
        if not runtime.supervisor_running():
            print("native runtime is not running")
            return 1
        for name, state in runtime.status().items():
            label = name.split(":")[-1]
            print(f"{label:<20} {state:<10} {runtime.logs / (label + '.log')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
