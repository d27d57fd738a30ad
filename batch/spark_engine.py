"""The Spark engine: the same blocks, the same `BlockScorer`, spread over a cluster's executors.

Input files are many and small, so Spark does not read rows itself: the driver lists the files and skips the
manifested ones (batch.runner), and the *blocks of file names* become a tiny DataFrame. `mapInPandas` hands each
executor's Python worker its blocks; the worker loads the model once from a broadcast `ModelPayload` (booster bytes +
resolved spec, so no MLflow access is needed on executors), reads each file from the folder or S3 prefix, scores it
with `batch.scoring` exactly as the embedded engine does, writes its Parquet output and returns one record per file.
The driver streams those records back (`toLocalIterator`) to write the manifest and the rejects list.

On a real cluster use `spark-submit` with the same CLI: see docs/batch.md.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from batch.engine import BlockScorer, Job
from batch.scoring import ModelPayload
from batch.storage import InputFile
from mlops.aws import ServiceUnavailable
from mlops.settings import Settings, load_settings

RESULT_COLUMNS = ("block", "input", "input_name", "fingerprint", "run_id", "status", "reason", "output", "rows")
RESULT_SCHEMA = (
    "block long, input string, input_name string, fingerprint string, run_id string, status string, "
    "reason string, output string, rows long"
)


def spark_address(settings: Settings | None = None) -> str:
    """SPARK_HOST: loopback natively; `auto`, this container's address, which the other containers of the cluster
    reach (a driver's executors call it back there)."""
    host = (settings or load_settings()).spark_host
    return socket.gethostbyname(socket.gethostname()) if host == "auto" else host


def local_session(master: str = "local[2]", app_name: str = "churn-batch") -> Any:
    """A Spark session on this machine's loopback: `local[N]`, or a standalone cluster on 127.0.0.1 (`spark://...`,
    batch/spark_cluster.py). No UI, no console progress bar; executors' Python workers run this very interpreter."""
    from pyspark.sql import SparkSession

    # PySpark starts its Python workers with $PYSPARK_PYTHON (default: `python3` on PATH, outside our venv);
    # they must run this very interpreter. (Written, not read: settings stay in mlops.settings.)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    address = spark_address() if master.startswith("spark://") else "127.0.0.1"
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", address)
        .config("spark.driver.host", address)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.daemon.module", "batch.spark_daemon")  # workers fork with our imports done
    )
    if master.startswith("spark://"):  # executors' logs in the workers' folders: rolled, a few kept
        builder = (
            builder.config("spark.executor.memory", "512m")
            .config("spark.executor.logs.rolling.strategy", "size")
            .config("spark.executor.logs.rolling.maxSize", str(10 * 1024 * 1024))
            .config("spark.executor.logs.rolling.maxRetainedFiles", "3")
        )
    return builder.getOrCreate()


SUBMIT = "submit"  # --spark-master value: take master and cluster settings from spark-submit / EMR


def session_for(master: str, app_name: str = "churn-batch") -> Any:
    """`local[N]` or `spark://` on this machine: a loopback session; `submit`: whatever spark-submit (YARN, EMR,
    k8s) configured."""
    if master == SUBMIT:
        from pyspark.sql import SparkSession

        return SparkSession.builder.appName(app_name).getOrCreate()
    if master.startswith("spark://"):
        check_master(master)
    return local_session(master, app_name)


def check_master(master: str, timeout: float = 3.0) -> None:
    """Fail at once, naming the setting, when a standalone master does not answer: Spark itself would retry for a
    minute and end with "All masters are unresponsive"."""
    parts = urlparse(master)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 7077), timeout=timeout).close()
    except OSError as error:
        raise ServiceUnavailable(
            f"Spark master {master} does not answer ({error}); start one with `make spark-cluster`, or point "
            "SPARK_MASTER (batch: --spark-master) at a running master"
        ) from error


@dataclass(frozen=True)
class _ExecutorTask:
    """What the `mapInPandas` closure carries: the job without its model (the model travels as a broadcast)."""

    job: Job
    payload: Any  # pyspark Broadcast[ModelPayload]


_scorers: dict[tuple[str, str, str], BlockScorer] = {}  # per Python worker: loaded once, reused across tasks


def _scorer_for(task: _ExecutorTask) -> BlockScorer:
    payload: ModelPayload = task.payload.value
    key = (payload.run_id, task.job.input_uri, task.job.output_uri)
    if key not in _scorers:
        _scorers[key] = BlockScorer(replace(task.job, payload=payload))
    return _scorers[key]


def _score_partition(task: _ExecutorTask, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    scorer = _scorer_for(task)
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for block_id, files_json in zip(batch["block"], batch["files"], strict=True):
            files = [InputFile(**f) for f in json.loads(files_json)]
            for record in scorer.score(files):
                rows.append({column: record.get(column) for column in RESULT_COLUMNS} | {"block": int(block_id)})
        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        yield frame.astype({"block": "int64", "rows": "Int64"})


def run_spark(job: Job, blocks: Sequence[list[InputFile]], spark: Any | None = None) -> Iterator[list[dict[str, Any]]]:
    """Yield each block's records as Spark finishes them; creates (and stops) a local session if none is given."""
    if not blocks:
        return
    own = spark is None
    session = spark or local_session()
    try:
        context = session.sparkContext
        broadcast = context.broadcast(job.payload)
        task = _ExecutorTask(replace(job, payload=None), broadcast)  # type: ignore[arg-type]
        rows = [(index, json.dumps([asdict(f) for f in block])) for index, block in enumerate(blocks)]
        slices = max(1, min(len(rows), context.defaultParallelism * 4))
        frame = session.createDataFrame(context.parallelize(rows, slices), "block long, files string")
        scored = frame.mapInPandas(lambda batches: _score_partition(task, batches), RESULT_SCHEMA)
        current: list[dict[str, Any]] = []
        current_block: int | None = None
        for row in scored.toLocalIterator():
            record = {k: v for k, v in row.asDict().items() if v is not None and k != "block"}
            if current_block is not None and row["block"] != current_block:
                yield current
                current = []
            current_block = row["block"]
            current.append(record)
        if current:
            yield current
        broadcast.unpersist()
    finally:
        if own:
            session.stop()
