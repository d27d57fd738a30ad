"""The scale-out settings, a part of `mlops.settings.Settings` (which inherits them): how consumers of one stream
form a group (server.kinesis.leases) and how many of them the runtimes start, and the Spark standalone cluster that
batch scoring (`--engine spark`) and parallel tuning (TUNING_PARALLELISM) run on (batch/spark_cluster.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The lease table of the consumers the runtimes start (native/supervisord.conf, docker-compose-serve.yml) when
# KINESIS_LEASE_TABLE names none: one group per stream, however many members it has.
GROUP_LEASE_TABLE = "kinesis-consumer-leases"


class ScaleSettings(BaseModel):
    kinesis_consumers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Kinesis consumers the native runtime starts (supervisord processes serve-kinesis-0..N-1, "
        "metrics on KINESIS_METRICS_PORT + i); they form one group through the lease table (compose: "
        "`make up RUNTIME=compose KINESIS_CONSUMERS=N` scales the serve-kinesis service)",
    )
    api_replicas: int = Field(
        default=1,
        ge=1,
        le=16,
        description="API servers (gunicorn, API_WORKERS workers each) the native runtime starts behind its nginx "
        "gateway on API_PORT: replica i on API_REPLICA_PORT + i (compose: `make up API_REPLICAS=N` scales "
        "predict-api behind the api-gateway service)",
    )
    api_replica_port: int = Field(default=9700, description="native: port of API replica 0 (i: + i)")
    api_trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=4,
        description="proxies in front of the API whose X-Forwarded-For is believed (the runtimes' gateway: 1); "
        "the client address is then the one the gateway saw, for AUTH_FAILURE_LIMIT and the rate limit by address",
    )
    kinesis_lease_table: str | None = Field(
        default=None,
        description="DynamoDB table of the Kinesis consumers' shard leases (KCL's layout): set, consumers of the "
        "stream share its shards and take over a dead one's; empty: a lone `python -m server.kinesis` keeps its "
        f"checkpoints in STATE_DIR, while the runtimes' consumers use '{GROUP_LEASE_TABLE}'",
    )
    kinesis_lease_timeout_s: float = Field(
        default=10.0, gt=0, description="a lease whose counter has not moved this long is taken over"
    )
    kinesis_worker_id: str | None = Field(
        default=None,
        description="this consumer's name in the lease table; empty: <hostname>-kinesis-<i> for member i of the "
        "native group (a restarted member resumes its own leases at once), else <hostname>-<pid>",
    )

    spark_master: str = Field(
        default="local[*]",
        description="Spark master of `python -m batch score --engine spark` (its --spark-master default) and of "
        "parallel tuning: local[N] on this machine, spark://HOST:PORT a standalone cluster (`make spark-cluster` "
        "starts one on spark://127.0.0.1:SPARK_MASTER_PORT)",
    )
    spark_host: str = Field(
        default="127.0.0.1",
        description="the address a Spark master, worker or driver of ours binds and announces: 127.0.0.1 natively; "
        "`auto` (compose) this container's address on its network, which the other containers reach",
    )
    spark_master_port: int = Field(default=7077, description="native Spark cluster: the master's port")
    spark_webui_port: int = Field(
        default=8090, description="native Spark cluster: the master's web UI (and /json/); worker i's UI on + 1 + i"
    )
    spark_workers: int = Field(default=2, ge=1, le=16, description="native Spark cluster: workers (spark-worker-i)")
    spark_worker_cores: int = Field(default=1, ge=1, description="cores each Spark worker offers")
    spark_worker_memory: str = Field(
        default="1g", pattern=r"^[0-9]+[mMgG]$", description="memory each Spark worker offers its executors (512m, 2g)"
    )
    tuning_parallelism: int = Field(
        default=1,
        ge=1,
        le=64,
        description="hyperopt trials run at once: 1 runs them one after another in the flow's process; N > 1 "
        "runs them as Spark tasks on SPARK_MASTER (hyperopt's SparkTrials), each still an MLflow child run",
    )

    def group_lease_table(self) -> str:
        """The lease table the runtimes' consumers share."""
        return self.kinesis_lease_table or GROUP_LEASE_TABLE
