"""`python -m batch.spark_cluster master|worker`: a Spark standalone cluster from pyspark's own `spark-class` script.

Why `spark-class` and not `start-master.sh` / `start-worker.sh`: the pip package of pyspark ships `bin/spark-class`
but not those two scripts, and they daemonize, which supervisord cannot watch. `spark-class` runs the master or a
worker in the foreground, as Spark's own container images do, so supervisord (native/supervisord.conf, `make
spark-cluster`) restarts a dead one and keeps its log. Natively everything binds 127.0.0.1; in compose (services
spark-master and spark-worker, SPARK_HOST=auto) each container its own address on the platform's network. The
workers' scratch folders are under STATE_DIR/spark and cleaned by Spark itself (finished applications' folders after
a day).

The batch engine (`--engine spark --spark-master spark://127.0.0.1:7077`) and parallel tuning (TUNING_PARALLELISM
> 1, SPARK_MASTER) connect to it as drivers; executors run this venv's Python.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from batch.spark_engine import spark_address
from mlops.settings import Settings, load_settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# a finished application's folder (its executors' logs, shipped files) lives one day in a worker's scratch folder
WORKER_OPTS = " ".join(
    (
        "-Dspark.worker.cleanup.enabled=true",
        "-Dspark.worker.cleanup.interval=1800",
        "-Dspark.worker.cleanup.appDataTtl=86400",
    )
)


def master_url(settings: Settings) -> str:
    """The master the workers join: SPARK_MASTER when it names a standalone master (compose:
    spark://spark-master:7077), else the native one on loopback."""
    if settings.spark_master.startswith("spark://"):
        return settings.spark_master
    return f"spark://127.0.0.1:{settings.spark_master_port}"


def spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def command(role: str, settings: Settings, index: int = 0) -> list[str]:
    """The `spark-class` command line of the master or of worker `index`."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    if role == "master":
        return [
            spark_class,
            MASTER_CLASS,
            "--host",
            spark_address(settings),
            "--port",
            str(settings.spark_master_port),
            "--webui-port",
            str(settings.spark_webui_port),
        ]
    return [
        spark_class,
        WORKER_CLASS,
        "--host",
        spark_address(settings),
        "--cores",
        str(settings.spark_worker_cores),
        "--memory",
        settings.spark_worker_memory,
        "--webui-port",
        str(settings.spark_webui_port + 1 + index),
        "--work-dir",
        str(settings.state_dir / "spark" / f"worker-{index}"),
        master_url(settings),
    ]


def environment(settings: Settings) -> dict[str, str]:
    """Loopback only, this venv's Python for the executors' Python workers, the cleanup of old application folders."""
    return dict(os.environ) | {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": spark_address(settings),
        "SPARK_LOG_DIR": str(settings.state_dir / "spark" / "logs"),
        "SPARK_WORKER_OPTS": WORKER_OPTS,
        "PYSPARK_PYTHON": sys.executable,
    }


def webui_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.spark_webui_port}"


def alive_workers(webui: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The workers the master at `webui` counts ALIVE (its /json/); [] when the master does not answer."""
    try:
        state = requests.get(f"{webui}/json/", timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return []
    return [worker for worker in state.get("workers", []) if worker.get("state") == "ALIVE"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batch.spark_cluster",
        description="Run a Spark standalone master or worker in the foreground (for supervisord), on 127.0.0.1.",
    )
    parser.add_argument("role", choices=("master", "worker"))
    parser.add_argument("--index", type=int, default=0, help="worker number: its web UI on SPARK_WEBUI_PORT + 1 + i")
    parser.add_argument("--env", default=None, help="local or cloud (default: ENV)")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    line = command(args.role, settings, args.index)
    (settings.state_dir / "spark" / "logs").mkdir(parents=True, exist_ok=True)
    print(" ".join(line), flush=True)
    os.execve(line[0], line, environment(settings))
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
