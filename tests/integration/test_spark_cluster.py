"""A real Spark standalone cluster: a master and two workers from pyspark's `spark-class`, started through
`python -m batch.spark_cluster` (what supervisord runs for `make spark-cluster`).

On it: the batch CLI scores a folder with the embedded engine's outputs and rejects, and the training CLI tunes with
TUNING_PARALLELISM=2, its trials still MLflow child runs. The drivers run as subprocesses, as users run them (and
because one process holds one SparkContext: test_batch_spark's local[2] session may be alive in this one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from batch.manifest import output_name
from batch.runner import run_batch
from batch.spark_cluster import alive_workers
from batch.testing import TINY_RUN_ID, save_model_dir, tiny_bundle, write_account_files
from mlops.settings import PROJECT_ROOT, Settings
from native.throwaway import SparkCluster, free_port, start_spark_cluster

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    found = start_spark_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2)
    yield found
    found.stop()


def run(module: str, *args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={"PATH": os.environ["PATH"], **env},  # Spark's launch scripts find `java` on PATH
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_cluster_has_two_workers_alive(cluster: SparkCluster) -> None:
    workers = alive_workers(cluster.webui_url)
    assert len(workers) == 2 and all(w["cores"] == 1 for w in workers), workers


def test_batch_on_the_cluster_gives_the_embedded_outputs_and_rejects(
    cluster: SparkCluster, service_env: dict[str, str], tmp_path: Path
) -> None:
    bundle = tiny_bundle()
    model_dir = save_model_dir(bundle, tmp_path / "model")
    inputs = tmp_path / "in"
    files = write_account_files(inputs, 6, 40) + write_account_files(inputs, 2, 25, fmt="parquet", start=10)
    (inputs / "broken.csv").write_text("CLIENTNUM,Customer_Age\n1,forty\n")
    embedded = run_batch(str(inputs), str(tmp_path / "embedded"), bundle, workers=1)

    args = ("score", str(inputs), str(tmp_path / "cluster"), "--engine", "spark", "--no-progress")
    model = ("--model-dir", str(model_dir), "--run-id", TINY_RUN_ID)
    result = run("batch", *args, "--spark-master", cluster.master_url, *model, env=service_env)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # 1: some files rejected
    assert "rejected" in result.stdout and "broken.csv" in result.stdout and "customer_age" in result.stdout
    assert embedded.rejected == 1 and "customer_age" in embedded.rejects[0]["reason"]
    for path in files:
        name = output_name(TINY_RUN_ID, path.name)
        on_cluster = pq.read_table(tmp_path / "cluster" / name).to_pandas()
        local = pq.read_table(tmp_path / "embedded" / name).to_pandas()
        assert on_cluster["clientnum"].tolist() == local["clientnum"].tolist()
        np.testing.assert_allclose(on_cluster["churn_probability"], local["churn_probability"], atol=1e-6, rtol=0)

    dead = f"spark://127.0.0.1:{free_port()}"
    refused = run("batch", *args, "--spark-master", dead, *model, env=service_env, timeout=60)
    assert refused.returncode == 2 and f"Spark master {dead} does not answer" in refused.stdout, refused.stdout


def test_parallel_tuning_runs_its_trials_on_the_cluster_as_mlflow_child_runs(
    cluster: SparkCluster, service_env: dict[str, str], settings: Settings, feature_snapshot: object
) -> None:
    env = {
        **service_env,
        "MODEL_NAME": "spark-tuned-model",  # its own model: the session's challenger stays the fixture's
        "TUNING_PARALLELISM": "2",
        "SPARK_MASTER": cluster.master_url,
        "TRAIN_THREADS": "1",
    }
    result = run("model_orchestration.train_flow", "--max-evals", "4", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.strip().splitlines()[-1].removeprefix("RUN_ID=")
    client = MlflowClient(settings.mlflow_tracking_uri)
    parent = client.get_run(run_id)
    assert parent.data.tags["tuning_parallelism"] == "2"
    assert parent.data.metrics["tuning_peak_parallel_trials"] == 2  # two trials ran at once, on the two workers
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}' and tags.kind = 'trial'"
    )
    assert sorted(int(c.data.tags["trial"]) for c in children) == [1, 2, 3, 4]
    assert all("valid_auc" in c.data.metrics and "max_depth" in c.data.params for c in children)

    dead = {**env, "SPARK_MASTER": f"spark://127.0.0.1:{free_port()}"}
    refused = run("model_orchestration.train_flow", "--max-evals", "2", env=dead, timeout=120)
    assert refused.returncode == 2 and "does not answer" in refused.stderr and "SPARK_MASTER" in refused.stderr, (
        refused.stderr[-3000:]
    )
