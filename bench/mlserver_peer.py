"""Seldon's MLServer with its XGBoost runtime, serving our booster: the peer of bench_http.

MLServer pins FastAPI, uvicorn and friends that need not match ours, so it lives in a virtual environment of the
bench's own (made once with uv, reused: `<STATE_DIR>/bench/mlserver-<version>`). One worker (`parallel_workers`
0: inference in the server process; > 0 crashed at start here, "There is no current event loop in thread
'MainThread'", the issue's finding), gRPC and metrics servers on their own free ports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "1.7.1"
PACKAGES = [f"mlserver=={VERSION}", f"mlserver-xgboost=={VERSION}"]
MODEL_NAME = "churn-model"


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def ensure_venv(state_dir: Path) -> Path:
    """The venv's `mlserver` executable; created on first use (about 30 s with a warm uv cache, more cold)."""
    venv = state_dir / "bench" / f"mlserver-{VERSION}"
    executable = venv / "bin" / "mlserver"
    if executable.exists():
        return executable
    print(f"creating MLServer's own venv at {venv} ({' '.join(PACKAGES)})", flush=True)
    subprocess.run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([*_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *PACKAGES], check=True)
    return executable


def model_folder(model_dir: Path, folder: Path, http_port: int, grpc_port: int, metrics_port: int) -> Path:
    """MLServer's settings.json and model-settings.json beside a copy of the booster file."""
    from mlops.model import BOOSTER_FILE

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "artifacts" / BOOSTER_FILE, folder / "model.ubj")
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": "./model.ubj", "version": "v1"},
            }
        )
    )
    return folder


def command(executable: Path, folder: Path) -> list[str]:
    return [str(executable), "start", str(folder)]


def infer_path() -> str:
    return f"/v2/models/{MODEL_NAME}/infer"
