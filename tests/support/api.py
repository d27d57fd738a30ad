"""The HTTP API as the native runtime runs it (`python -m server.api` under gunicorn), on a free port."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.stores.prediction_log import SQLiteStore
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http

MAX_RECORDS = 250
MAX_BODY = 200_000


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[Any]
    log: Path
    state_dir: Path
    prediction_log_uri: str

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.prediction_log_uri)


def start_api(service_env: dict[str, str], state_dir: Path, workers: int = 2, **extra: str) -> ApiServer:
    """`python -m server.api` as the native runtime runs it, on a free port, its own state folder."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{state_dir / 'predictions.sqlite'}"
    env = {
        **service_env,
        "STATE_DIR": str(state_dir),
        "PREDICTION_LOG_URI": uri,
        "DRIFT_SERVICE_URL": "",
        "API_PORT": str(port),
        "API_WORKERS": str(workers),
        "MAX_BATCH_RECORDS": str(MAX_RECORDS),
        "MAX_BODY_BYTES": str(MAX_BODY),
        **extra,
    }
    log = state_dir / "logs" / f"predict-api-{port}.log"
    process = start_process([str(VENV_BIN / "python"), "-m", "server.api"], log, env=env)
    server = ApiServer(f"http://127.0.0.1:{port}", process, log, state_dir, uri)
    try:
        wait_for_http(f"{server.url}/health", 120, process, log)
    except Exception:
        stop_process(process)
        raise
    return server
