"""The compose runtime for real: every image built, both stacks up in real containers, driven by the Makefile.

What a user does on a Docker host, in order: `make setup-model-registry`, `make init_aws`, `make
apply-model-train-flow` (a training run in the worker container registers a model), `make train`, `make
setup-model-serve` with a RUN_ID, then traffic over HTTP and Kinesis, `make batch` embedded and on `make
spark-cluster` (ENGINE=spark), `make train TUNING_PARALLELISM=2` on that cluster, drift gauges in Prometheus, a
report behind nginx, `make stop-serve` / `make start-serve` with another RUN_ID, `make backup`, `make reset_all`,
`make restore` and the platform back on it.

The engine: the one `DOCKER_HOST` (or the default socket) names when it answers, else one started here as root with
its images under /var/lib/churn-mlops-docker (kept between runs, so a warm run rebuilds nothing). No engine and no way
to start one is a failure with the reason, never a skip. Where no registry is reachable (our machines), the
third-party images are stand-ins (docker/stand-in-images) and MongoDB and Grafana are left out by an override
(tests/compose/): the prediction log is SQLite on a shared volume. With `COMPOSE_TEST_FULL=1` (GitHub Actions, where
images are pulled) the full serve stack runs, and Grafana and MongoDB are checked too.
Host ports are free ports chosen here, so a native platform or the native tests can run beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from mlops import local_secrets
from mlops.settings import PROJECT_ROOT
from native.throwaway import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

ENGINE_ROOT = Path("/var/lib/churn-mlops-docker")
PRIVATE_SOCKET = f"unix://{ENGINE_ROOT}/run/docker.sock"
TRIALS = 2
SERVE_OVERRIDE = "tests/compose/serve-without-mongo-grafana.yml"
PORTS = (
    "MOTO",
    "MLFLOW",
    "PREFECT",
    "REPORTS",
    "API",
    "DRIFT",
    "PROMETHEUS",
    "ALERTMANAGER",
    "ALERT_RECEIVER",
    "GRAFANA",
    "MONGO",
)


def docker_client() -> str:
    """A client whose `build` speaks BuildKit: Debian's docker.io client where it is installed (the 28.x client some
    hosts carry in /usr/local/bin refuses BuildKit without buildx), else the one on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        pytest.fail("no docker client: run `make system-packages` as root, or `sudo apt-get install -y docker.io`")
    return found


def answers(docker: str, host: str | None) -> bool:
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    if not host:
        env.pop("DOCKER_HOST", None)
    return subprocess.run([docker, "info"], env=env, capture_output=True, timeout=60).returncode == 0


@dataclass
class Engine:
    docker: str
    host: str | None  # None: the client's default socket
    started_here: bool
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    docker = docker_client()
    given = os.environ.get("DOCKER_HOST")
    if given or answers(docker, None):
        if not answers(docker, given):
            pytest.fail(f"DOCKER_HOST={given} is set but no Docker engine answers there")
        yield Engine(docker, given, started_here=False)
        return
    if answers(docker, PRIVATE_SOCKET):
        yield Engine(docker, PRIVATE_SOCKET, started_here=False)
        return
    env = {
        **os.environ,
        "DOCKER": docker,
        "DOCKER_HOST": PRIVATE_SOCKET,
        "DOCKER_ENGINE_ROOT": str(ENGINE_ROOT / "data"),
    }
    started = subprocess.run(
        ["docker/engine.sh", "start"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.fail(f"cannot start a Docker engine for the compose test:\n{started.stdout}{started.stderr}")
    try:
        yield Engine(docker, PRIVATE_SOCKET, started_here=True)
    finally:
        subprocess.run(["docker/engine.sh", "stop"], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120)


@dataclass
class Stack:
    engine: Engine
    env: dict[str, str]
    ports: dict[str, int]
    full: bool
    scratch: Path  # files handed to make targets (FILE=...)

    def url(self, port: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    @property
    def secrets(self) -> dict[str, str]:
        """The control-plane secrets the Makefile made for this stack (env=local: STATE_DIR/secrets.env)."""
        return local_secrets.read(Path(self.env["STATE_DIR"]) / "secrets.env")

    @property
    def writer(self) -> tuple[str, str]:
        return self.secrets["MLFLOW_TRACKING_USERNAME"], self.secrets["MLFLOW_TRACKING_PASSWORD"]

    def container(self, project: str, service: str) -> str:
        ids = self.docker(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).split()  # fmt: skip
        assert ids, f"no running container of {project}/{service}"
        return ids[0]

    def exec(self, project: str, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.engine.docker, "exec", self.container(project, service), *command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def make(self, target: str, *args: str, timeout: int = 1200) -> str:
        """`make <target> RUNTIME=compose ...`; the output, or a failure showing its tail."""
        started = time.monotonic()
        result = subprocess.run(
            ["make", "--no-print-directory", target, "RUNTIME=compose", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.engine.timings[f"make {target}"] = round(time.monotonic() - started, 1)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"make {target} failed ({result.returncode}):\n{output[-8000:]}"
        return output

    def docker(self, *args: str) -> str:
        result = subprocess.run(
            [self.engine.docker, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result.stdout

    def logs(self, project: str, service: str) -> str:
        ids = self.docker(
            "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).split()  # fmt: skip
        return "\n".join(
            subprocess.run(
                [self.engine.docker, "logs", "--tail", "60", i],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ).stdout
            for i in ids
        )

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url("MOTO"),
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def wait_until(condition: Callable[[], Any], timeout: float, what: Callable[[], str] | str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (requests.RequestException, KeyError, IndexError, ValueError):
            value = None
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for: {what() if callable(what) else what}")


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    shim = tmp_path_factory.mktemp("docker-shim")
    # docker-compose v1 builds through the `docker` on PATH: make it the BuildKit-capable client chosen above.
    (shim / "docker").symlink_to(engine.docker)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "PREFECT_", "DOCKER_HOST"))}
    ports = {name: free_port() for name in PORTS}
    full = os.environ.get("COMPOSE_TEST_FULL") == "1"
    env.update(
        {
            "PATH": f"{shim}:{os.environ['PATH']}",
            "DOCKER": engine.docker,
            "MAKEFLAGS": "",
            "RUN_ID": "",
            "MAX_EVALS": str(TRIALS),
            "WAIT_TIMEOUT": "420",
            # the Makefile makes this stack's control-plane secrets here (STATE_DIR/secrets.env)
            "STATE_DIR": str(tmp_path_factory.mktemp("compose-state")),
            **{f"HOST_PORT_{name}": str(port) for name, port in ports.items()},
        }
    )
    if engine.host:
        env["DOCKER_HOST"] = engine.host
    if not full:
        env["SERVE_FILES"] = f"docker-compose-serve.yml {SERVE_OVERRIDE}"
        env["STATE_SERVICES"] = "redis"  # the servers started (and restored into) before the rest: no MongoDB here
    the_stack = Stack(engine, env, ports, full, tmp_path_factory.mktemp("compose-files"))
    # A previous run that died half way leaves containers and volumes: start from nothing.
    the_stack.make("reset_all", timeout=300)
    # the backups volume outlives reset_all by design: this test's backups go with the test
    subprocess.run([engine.docker, "volume", "rm", "-f", "churn-mlops-backups"], env=env, capture_output=True)
    if os.environ.get("COMPOSE_TEST_PULL") != "1":
        started = time.monotonic()
        built = subprocess.run(
            ["docker/stand-in-images/build.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        engine.timings["stand-in images"] = round(time.monotonic() - started, 1)
        assert built.returncode == 0, f"stand-in images:\n{built.stdout}{built.stderr}"
    try:
        yield the_stack
    finally:
        subprocess.run(
            ["make", "--no-print-directory", "reset_all", "RUNTIME=compose"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        subprocess.run([engine.docker, "volume", "rm", "-f", "churn-mlops-backups"], env=env, capture_output=True)
        # every rebuild leaves the previous image untagged: drop those (build cache and tagged images stay warm)
        subprocess.run([engine.docker, "image", "prune", "-f"], env=env, capture_output=True, timeout=300)
        print(f"\ncompose e2e timings (s): {json.dumps(engine.timings)}")


def registered_versions(stack: Stack) -> list[dict[str, Any]]:
    """The registered versions of churn-model, asked of the MLflow container as the platform's writer."""
    answer = requests.get(
        stack.url("MLFLOW", "/api/2.0/mlflow/model-versions/search"),
        params={"filter": "name = 'churn-model'"},
        auth=stack.writer,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json().get("model_versions", [])


def check_the_spark_cluster(stack: Stack, run_id: str) -> None:
    """`make spark-cluster` (a master and 2 workers in containers) and `make batch ENGINE=spark` (the driver in a
    one-off container, its executors calling it back) give the embedded engine's outputs (`make batch`, the batch
    deployment's image) for the same account files in S3; `make train TUNING_PARALLELISM=2` tunes on the same
    cluster, each trial still an MLflow child run of the registered run."""
    import io

    import numpy as np
    import pyarrow.parquet as pq

    from batch.manifest import output_name
    from batch.testing import write_account_files

    s3 = stack.aws("s3")
    files = write_account_files(stack.scratch / "accounts", 4, 30)
    for path in files:
        s3.upload_file(str(path), "churn-feature-store", f"e2e-batch/in/{path.name}")
    prefix = "s3://churn-feature-store/e2e-batch"
    stack.make("batch", f"INPUT={prefix}/in", f"OUTPUT={prefix}/embedded", f"RUN_ID={run_id}")
    output = stack.make("spark-cluster", timeout=1500)  # cold: the JRE and pyspark into the Spark base image
    workers = stack.docker(
        "ps", "-q", "--filter", "label=com.docker.compose.project=churn-mlops-serve",
        "--filter", "label=com.docker.compose.service=spark-worker",
    ).split()  # fmt: skip
    assert len(workers) == 2, output[-3000:]
    output = stack.make("batch", f"INPUT={prefix}/in", f"OUTPUT={prefix}/cluster", f"RUN_ID={run_id}", "ENGINE=spark")
    assert "batch spark" in output and "scored=4 " in output, output[-3000:]

    def table(kind: str, name: str) -> Any:
        key = f"e2e-batch/{kind}/{output_name(run_id, name)}"
        return pq.read_table(io.BytesIO(s3.get_object(Bucket="churn-feature-store", Key=key)["Body"].read()))

    for path in files:
        on_cluster, embedded = table("cluster", path.name).to_pandas(), table("embedded", path.name).to_pandas()
        assert on_cluster["clientnum"].tolist() == embedded["clientnum"].tolist()
        np.testing.assert_allclose(on_cluster["churn_probability"], embedded["churn_probability"], atol=1e-6, rtol=0)

    # parallel tuning: the flow's driver in a one-off container of the Spark image (train-spark), trials as tasks
    output = stack.make("train", "TRIALS=3", "TUNING_PARALLELISM=2", timeout=1500)
    assert "tuning 2 trials at a time on Spark master spark://spark-master:7077" in output, output[-3000:]
    tuned = re.findall(r"RUN_ID=([0-9a-f]{32})", output)[-1]
    assert tuned in {v["run_id"] for v in registered_versions(stack)}

    def mlflow_api(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = requests.post(stack.url("MLFLOW", path), json=body, auth=stack.writer, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    parent = requests.get(
        stack.url("MLFLOW", "/api/2.0/mlflow/runs/get"), params={"run_id": tuned}, auth=stack.writer, timeout=10
    ).json()["run"]
    tags = {t["key"]: t["value"] for t in parent["data"].get("tags", [])}
    assert tags.get("tuning_parallelism") == "2", tags
    trials = mlflow_api(
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [parent["info"]["experiment_id"]], "filter": f"tags.mlflow.parentRunId = '{tuned}'"},
    ).get("runs", [])
    assert len(trials) == 3 and all(
        any(m["key"] == "valid_auc" for m in t["data"].get("metrics", [])) for t in trials
    ), trials
    stack.make("spark-cluster-stop")
    assert stack.docker("ps", "-q", "--filter", "label=com.docker.compose.service=spark-master").split() == []


def registered_models(stack: Stack) -> dict[str, Any]:
    """Each registered version (number, run) and the aliases of churn-model, as the platform's writer sees them."""
    answer = requests.get(
        stack.url("MLFLOW", "/api/2.0/mlflow/registered-models/get"),
        params={"name": "churn-model"},
        auth=stack.writer,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    aliases = {a["alias"]: a["version"] for a in answer.json()["registered_model"].get("aliases", [])}
    versions = sorted((v["version"], v["run_id"]) for v in registered_versions(stack))
    return {"versions": versions, "aliases": aliases}


def check_control_planes_refuse_strangers(stack: Stack) -> None:
    """MLflow, Prefect, the drift service and Redis take nothing without credentials; clients reach only the API."""
    mlflow_search = stack.url("MLFLOW", "/api/2.0/mlflow/experiments/search")
    assert requests.post(mlflow_search, json={"max_results": 1}, timeout=10).status_code == 401
    reader = (stack.env.get("MLFLOW_READER_USERNAME", "mlops-reader"), stack.secrets["MLFLOW_READER_PASSWORD"])
    assert requests.post(mlflow_search, json={"max_results": 1}, auth=reader, timeout=10).status_code == 200
    # the reader reads the registry and cannot move its aliases (what serving follows)
    alias = stack.url("MLFLOW", "/api/2.0/mlflow/registered-models/alias")
    moved = requests.post(
        alias, json={"name": "churn-model", "alias": "champion", "version": "1"}, auth=reader, timeout=10
    )
    assert moved.status_code == 403, moved.text
    flows = stack.url("PREFECT", "/api/flows/filter")
    assert requests.post(flows, json={}, timeout=10).status_code == 401
    prefect_user = tuple(stack.secrets["PREFECT_API_AUTH_STRING"].split(":", 1))
    assert requests.post(flows, json={}, auth=prefect_user, timeout=10).status_code == 200
    iterate = requests.post(stack.url("DRIFT", "/iterate/bank_churners"), json=[], timeout=10)
    assert iterate.status_code == 401, iterate.text
    # Redis: protected by its password, from inside the platform's network too
    refused = stack.exec("churn-mlops-serve", "redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping")
    assert "NOAUTH" in refused.stdout + refused.stderr, refused
    assert stack.exec("churn-mlops-serve", "redis", "redis-cli", "ping").stdout.strip() == "PONG"
    # a client container (the HTTP simulator, on the edge network) reaches the API's gateway and nothing else (not
    # even the API's replicas, which believe the gateway's X-Forwarded-For)
    probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)"
    for url, reachable in (
        ("http://api-gateway:9696/health", True),
        ("http://predict-api:9696/health", False),
        ("http://mlflow:5051/health", False),
        ("http://prefect:4200/api/health", False),
        ("http://drift-service:8085/health", False),
    ):
        tried = stack.exec("churn-mlops-serve", "send-data-api", "python", "-c", probe, url)
        assert (tried.returncode == 0) == reachable, (url, tried.stderr[-500:])


def healthy_after(output: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"wait-healthy: \S+/(\S+) healthy after (\d+) s", output)}


def put_and_read_kinesis(stack: Stack, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinesis = stack.aws("kinesis")
    envelopes = [{"request_id": f"compose-{i:03d}", "record": r} for i, r in enumerate(records)]
    kinesis.put_records(
        StreamName="predictions",
        Records=[{"Data": json.dumps(e).encode(), "PartitionKey": e["request_id"]} for e in envelopes],
    )

    def results() -> list[dict[str, Any]]:
        found = []
        for shard in kinesis.list_shards(StreamName="results")["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName="results", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for item in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
                result = json.loads(item["Data"])
                if str(result.get("request_id", "")).startswith("compose-"):
                    found.append(result)
        return found if len({r["request_id"] for r in found}) >= len(envelopes) else []

    return wait_until(
        results, 180, lambda: "20 Kinesis results; consumer log:\n" + stack.logs("churn-mlops-serve", "serve-kinesis")
    )


def lease_owners(stack: Stack) -> dict[str, str]:
    """shard id -> worker holding its lease, read from the group's DynamoDB table in the moto container."""
    items = stack.aws("dynamodb").scan(TableName="kinesis-consumer-leases")["Items"]
    return {item["leaseKey"]["S"]: item["leaseOwner"]["S"] for item in items if "leaseOwner" in item}


def sample_records(n: int) -> list[dict[str, Any]]:
    from mlops.data import clean, generate_bank_churners
    from mlops.spec import FeatureSpec

    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    frame = clean(generate_bank_churners(n, seed=123), spec, require_target=False)[spec.feature_columns]
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def first_customer(stack: Stack) -> tuple[str, dict[str, Any]]:
    """The first customer of the feature store's newest snapshot (read from the moto container's S3)."""
    import io

    import pandas as pd

    from mlops.spec import FeatureSpec

    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    s3 = stack.aws("s3")
    data_hash = s3.get_object(Bucket="churn-feature-store", Key=f"{spec.name}/LATEST")["Body"].read().decode().strip()
    body = s3.get_object(Bucket="churn-feature-store", Key=f"{spec.name}/{data_hash}/train.parquet")["Body"].read()
    row = pd.read_parquet(io.BytesIO(body)).iloc[0]
    features = {c: (None if pd.isna(row[c]) else row[c]) for c in spec.feature_columns}
    features = {k: (v.item() if hasattr(v, "item") else v) for k, v in features.items()}
    return str(row[spec.id_column]), features


def prometheus_value(stack: Stack, query: str) -> float | None:
    answer = requests.get(stack.url("PROMETHEUS", "/api/v1/query"), params={"query": query}, timeout=10).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_compose_platform_builds_runs_serves_switches_and_resets(stack: Stack) -> None:
    timings = stack.engine.timings

    # --- registry side: images built, moto, MLflow and Prefect healthy --------------------------------------------
    output = stack.make("setup-model-registry")
    timings.update({f"healthy {k}": v for k, v in healthy_after(output).items()})
    assert requests.get(stack.url("MLFLOW", "/health"), timeout=10).status_code == 200
    assert requests.get(stack.url("PREFECT", "/api/health"), timeout=10).status_code == 200

    # --- the feature store, through the worker container ----------------------------------------------------------
    stack.make("init_aws")
    s3 = stack.aws("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="churn-feature-store").get("Contents", [])]
    assert any(k.endswith("train.parquet") for k in keys), keys
    assert set(stack.aws("kinesis").list_streams()["StreamNames"]) >= {"predictions", "results"}

    # --- a scheduled-deployment run in the worker container registers a model ------------------------------------
    output = stack.make("apply-model-train-flow")
    timings.update({f"healthy {k}": v for k, v in healthy_after(output).items()})
    first = wait_until(
        lambda: registered_versions(stack),
        600,
        lambda: "a registered model; worker log:\n" + stack.logs("churn-mlops-registry", "train-deployment"),
    )[0]
    first_run = first["run_id"]
    # ... and one more in the foreground (`make train` runs it in a container too)
    output = stack.make("train", "TRIALS=1")
    second_run = re.findall(r"RUN_ID=([0-9a-f]{32})", output)[-1]
    assert second_run != first_run
    assert {v["run_id"] for v in registered_versions(stack)} >= {first_run, second_run}

    # --- serving side, pinned to the first run ---------------------------------------------------------------------
    output = stack.make("setup-model-serve", f"RUN_ID={first_run}")
    timings.update({f"healthy {k}": v for k, v in healthy_after(output).items()})
    health = requests.get(stack.url("API", "/health"), timeout=10).json()
    assert health["model_run_id"] == first_run, health

    records = sample_records(400)
    answer = requests.post(stack.url("API", "/predict"), json=records[0], timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_run_id"] == first_run and 0.0 <= answer.json()["churn chance"] <= 1.0
    bad = requests.post(stack.url("API", "/predict"), json={**records[0], "customer_age": "old"}, timeout=30)
    assert bad.status_code == 422, bad.text
    assert (bad.json()["field"], bad.json()["reason"]) == ("customer_age", 'must be a number, got string "old"')
    # 400 records: enough for the drift service's minimum window
    batch = requests.post(stack.url("API", "/predict"), json=records, timeout=60)
    assert batch.status_code == 200 and len(batch.json()) == 400

    # --- Kinesis: 20 records in, their 20 results out --------------------------------------------------------------
    results = put_and_read_kinesis(stack, records[:20])
    assert {r["model_run_id"] for r in results} == {first_run}
    # two replicas (make's KINESIS_CONSUMERS default) form one group: each holds one of the two shards' leases
    consumers = stack.docker(
        "ps", "-q", "--filter", "label=com.docker.compose.project=churn-mlops-serve",
        "--filter", "label=com.docker.compose.service=serve-kinesis",
    ).split()  # fmt: skip
    assert len(consumers) == 2, consumers

    def spread() -> dict[str, str] | None:
        found = lease_owners(stack)
        return found if len(set(found.values())) == 2 else None

    owners = wait_until(
        spread,
        90,
        lambda: (
            f"two owners in the lease table ({lease_owners(stack)}); consumer logs:\n"
            + stack.logs("churn-mlops-serve", "serve-kinesis")
        ),
    )
    assert len(owners) == 2 and all(owner.endswith("-kinesis-0") for owner in owners.values()), owners

    # --- outcomes: one through POST /outcomes, the Kinesis ones through `make outcomes` (a container) ----------------
    settled = requests.post(
        stack.url("API", "/outcomes"),
        json={"request_id": answer.headers["X-Request-ID"], "label": "Attrited Customer"},
        timeout=30,
    )
    assert settled.status_code == 200 and settled.json()["settled"] == 1, settled.text
    outcomes_file = stack.scratch / "outcomes.csv"
    outcomes_file.write_text(
        "request_id,Attrition_Flag\n"
        + "".join(f"{r['request_id']},Existing Customer\n" for r in results)
        + "never-predicted,Existing Customer\n"
    )
    outcomes_file.chmod(0o644)
    output = stack.make("outcomes", f"FILE={outcomes_file}")
    ingested = json.loads([line for line in output.splitlines() if line.startswith('{"received"')][-1])
    assert (ingested["settled"], ingested["unknown"]) == (20, 1), ingested

    # --- scoring by id: `make materialize` (a container) into the redis container, then GET /customers/<id>/churn ----
    output = stack.make("materialize")
    # the store's address is shown, its password never
    assert "online  " in output and "redis://:***@redis:6379/0" in output, output[-2000:]
    assert stack.secrets["REDIS_PASSWORD"] not in output
    customer, features = first_customer(stack)
    by_id = requests.get(stack.url("API", f"/customers/{customer}/churn"), timeout=30)
    assert by_id.status_code == 200, by_id.text
    full = requests.post(stack.url("API", "/predict"), json={**features, "clientnum": customer}, timeout=30).json()
    assert abs(by_id.json()["churn chance"] - full["churn chance"]) < 1e-6
    assert requests.get(stack.url("API", "/customers/000000000/churn"), timeout=30).status_code == 404

    check_the_spark_cluster(stack, first_run)

    # --- drift gauges, scraped by the Prometheus container ---------------------------------------------------------
    share = wait_until(
        lambda: prometheus_value(stack, "drift_share") is not None and prometheus_value(stack, "drift_share"),
        240,
        lambda: "drift_share in Prometheus; drift log:\n" + stack.logs("churn-mlops-serve", "drift-service"),
    )
    assert 0.0 <= float(share) <= 1.0
    targets = requests.get(stack.url("PROMETHEUS", "/api/v1/targets"), timeout=10).json()["data"]["activeTargets"]
    health_of = {t["labels"]["job"]: t["health"] for t in targets}
    # the drift service reads the same outcome store: 21 labels, below OUTCOME_MIN_LABELS, so no ROC AUC yet
    # (the drift service recomputes every PERFORMANCE_INTERVAL_SECONDS and Prometheus scrapes it: wait for the 21)
    wait_until(
        lambda: prometheus_value(stack, f'realized_labels{{model_run_id="{first_run}"}}') == 21,
        120,
        lambda: (
            "realized_labels == 21 in Prometheus (last: "
            + str(prometheus_value(stack, f'realized_labels{{model_run_id="{first_run}"}}'))
            + "); drift log:\n"
            + stack.logs("churn-mlops-serve", "drift-service")
        ),
    )
    assert prometheus_value(stack, f'realized_enough_labels{{model_run_id="{first_run}"}}') == 0
    assert prometheus_value(stack, "realized_roc_auc") is None
    assert {job: health_of.get(job) for job in ("predict-api", "serve-kinesis", "drift-service")} == {
        "predict-api": "up",
        "serve-kinesis": "up",
        "drift-service": "up",
    }, targets
    # found by Docker's DNS: each consumer replica is a target of its own
    consumer_targets = [t for t in targets if t["labels"]["job"] == "serve-kinesis"]
    assert len(consumer_targets) == 2 and {t["health"] for t in consumer_targets} == {"up"}, consumer_targets

    # --- alerting: Prometheus sends to the Alertmanager container, which routes to the receiver container -----------
    managers = requests.get(stack.url("PROMETHEUS", "/api/v1/alertmanagers"), timeout=10).json()["data"]
    assert [m["url"] for m in managers["activeAlertmanagers"]] == ["http://alertmanager:9093/api/v2/alerts"], managers
    test_alert = [{"labels": {"alertname": "ComposeAlertPath", "severity": "info"}, "annotations": {"summary": "e2e"}}]
    assert requests.post(stack.url("ALERTMANAGER", "/api/v2/alerts"), json=test_alert, timeout=10).ok
    wait_until(
        lambda: any(
            a["alertname"] == "ComposeAlertPath"
            for a in requests.get(stack.url("ALERT_RECEIVER", "/alerts"), timeout=10).json()["alerts"]
        ),
        60,
        lambda: "the test alert at the receiver; receiver log:\n" + stack.logs("churn-mlops-serve", "alert-receiver"),
    )

    # --- an HTML report, served by the nginx container -------------------------------------------------------------
    stack.make("apply-prediction-reporting")
    stack.make("report")
    index = requests.get(stack.url("REPORTS", "/"), timeout=10)
    assert index.status_code == 200, index.text
    links = re.findall(r'href="([^"]*data_report[^"]*\.html)"', index.text)
    assert links, index.text[:2000]
    report = requests.get(stack.url("REPORTS", "/" + links[0].lstrip("./")), timeout=30)
    assert report.status_code == 200 and len(report.content) > 10_000

    # --- retention: the archive runs in the reports container against the same log and bucket (nothing is old yet) --
    output = stack.make("archive", "DRY_RUN=1")
    assert "archive: would archive rows before" in output and "predictions 0" in output, output[-2000:]

    check_control_planes_refuse_strangers(stack)
    if stack.full:
        check_grafana_and_mongo(stack)

    # --- switch the served model: stop, start with another RUN_ID ----------------------------------------------------
    stack.make("stop-serve")
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.url("API", "/health"), timeout=5)
    stack.make("start-serve", f"RUN_ID={second_run}", "API_REPLICAS=3")
    health = requests.get(stack.url("API", "/health"), timeout=10).json()
    assert health["model_run_id"] == second_run, health
    answer = requests.post(stack.url("API", "/predict"), json=records[1], timeout=30)
    assert answer.status_code == 200 and answer.json()["model_run_id"] == second_run
    check_a_replica_stopped_under_traffic(stack, records[1])

    # --- backup while it serves (the simulators' traffic on) --------------------------------------------------------
    models_before = registered_models(stack)
    output = stack.make("backup")
    location, counted = re.search(r"^backup: (/var/lib/mlops-backups/\S+) (\{.*\})$", output, re.M).groups()
    counts = json.loads(counted)
    assert counts["model_versions"] == len(models_before["versions"]), output[-3000:]
    assert stack.full or counts["predictions"] >= 420, output[-3000:]  # the full stack's log is MongoDB's dump
    assert int(re.search(r"backup: (\d+) objects of s3://mlflow-artifacts", output).group(1)) > 0, output[-3000:]

    # --- reset_all: no container and no volume of either project is left, the backups are ----------------------------
    stack.make("reset_all", timeout=300)
    for project in ("churn-mlops-registry", "churn-mlops-serve"):
        label = f"label=com.docker.compose.project={project}"
        assert stack.docker("ps", "-a", "-q", "--filter", label).split() == [], project
        assert stack.docker("volume", "ls", "-q", "--filter", label).split() == [], project
    assert "churn-mlops-reports" not in stack.docker("volume", "ls", "-q").split()
    assert "churn-mlops-backups" in stack.docker("volume", "ls", "-q").split()

    # --- restore into the empty volumes: the same registry, the same rows, serving on the same model -----------------
    output = stack.make("restore", f"FROM={location.rsplit('/', 1)[1]}")
    assert f"restore: {location.rsplit('/', 1)[1]} {counted}" in output, output[-3000:]
    stack.make("setup-model-registry")
    assert registered_models(stack) == models_before
    output = stack.make("init_aws")  # the streams (moto keeps nothing); the restored LATEST snapshot is kept
    assert "is LATEST: kept" in output, output[-2000:]
    output = stack.make("setup-model-serve", f"RUN_ID={second_run}")
    health = requests.get(stack.url("API", "/health"), timeout=10).json()
    assert health["model_run_id"] == second_run, health
    answer = requests.post(stack.url("API", "/predict"), json=records[2], timeout=30)
    assert answer.status_code == 200 and answer.json()["model_run_id"] == second_run, answer.text
    if not stack.full:
        logged = stack.exec(
            "churn-mlops-serve", "predict-api", "python", "-c",
            "import sqlite3; c = sqlite3.connect('/var/lib/prediction-log/predictions.sqlite');"
            "print(*[c.execute(f'SELECT COUNT(*) FROM {t}').fetchone()[0] for t in ('predictions', 'outcomes')])",
        )  # fmt: skip
        predictions, outcomes = map(int, logged.stdout.split())
        assert predictions >= counts["predictions"] and outcomes == counts["outcomes"], (logged, counts)
    # the online store (redis) came back through the dumps, once redis ran and before the API started
    assert re.search(r'"redis": [1-9]\d*\} back in MongoDB/Redis', output), output[-3000:]
    customer, _ = first_customer(stack)
    assert requests.get(stack.url("API", f"/customers/{customer}/churn"), timeout=30).status_code == 200


def check_a_replica_stopped_under_traffic(stack: Stack, record: dict[str, Any]) -> None:
    """Three API replicas behind the gateway's one port: one is stopped (SIGTERM, as a scale-down or a deploy does)
    while three clients send; no request fails (the gateway retries elsewhere what it could not place) and every
    answered prediction is in the log, the stopped replica's included."""
    replicas = stack.docker(
        "ps", "-q", "--filter", "label=com.docker.compose.project=churn-mlops-serve",
        "--filter", "label=com.docker.compose.service=predict-api",
    ).split()  # fmt: skip
    assert len(replicas) == 3, replicas
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    reply = session.post(stack.url("API", "/predict"), json=record, timeout=30)
                except requests.RequestException as error:
                    failures.append(f"{type(error).__name__}: {error}")
                    continue
                if reply.status_code == 200:
                    answered.append(reply.headers["X-Request-ID"])
                else:
                    failures.append(f"{reply.status_code}: {reply.text[:200]}")
                time.sleep(0.05)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for thread in clients:
        thread.start()
    time.sleep(5)
    before = len(answered)
    stack.docker("stop", "-t", "20", replicas[0])
    time.sleep(5)
    stop.set()
    for thread in clients:
        thread.join(timeout=60)
    assert failures == [], failures[:5]
    assert before > 10 and len(answered) > before + 10, (before, len(answered))

    def unlogged() -> list[str]:
        return [
            request_id
            for request_id in answered
            if requests.get(stack.url("API", f"/predictions/{request_id}"), timeout=10).status_code != 200
        ]

    missing = unlogged()
    if missing:
        time.sleep(10)  # the log writers' last batches
        missing = unlogged()
    assert missing == [], f"{len(missing)} of {len(answered)} answered predictions not in the log"


def check_grafana_and_mongo(stack: Stack) -> None:
    """Full stack only (images pulled): the provisioned dashboard, its datasource, and predictions in MongoDB."""
    import pymongo

    assert requests.get(stack.url("GRAFANA", "/api/search"), auth=("admin", "admin"), timeout=10).status_code == 401
    auth = ("admin", stack.secrets["GRAFANA_ADMIN_PASSWORD"])
    found = requests.get(stack.url("GRAFANA", "/api/search"), params={"type": "dash-db"}, auth=auth, timeout=10)
    assert found.status_code == 200 and found.json(), found.text
    sources = requests.get(stack.url("GRAFANA", "/api/datasources"), auth=auth, timeout=10).json()
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    health = requests.get(
        stack.url("GRAFANA", f"/api/datasources/uid/{prometheus['uid']}/health"), auth=auth, timeout=10
    )
    assert health.status_code == 200, health.text
    client = pymongo.MongoClient(
        f"mongodb://mlops:{stack.secrets['MONGO_PASSWORD']}@127.0.0.1:{stack.ports['MONGO']}/churn?authSource=admin",
        serverSelectionTimeoutMS=5000,
    )
    assert wait_until(
        lambda: (
            client["churn"].list_collection_names()
            and sum(
                client["churn"][name].estimated_document_count() for name in client["churn"].list_collection_names()
            )
            >= 400
        ),
        60,
        "predictions in MongoDB",
    )
