"""Kinesis consumer group throughput: records/s with 1, 2 and 3 consumers on a 4-shard stream, side by side.

    .venv/bin/python -m bench.bench_kinesis_group                    # 40,000 records, 1/2/3 consumers, 2 rounds
    .venv/bin/python -m bench.bench_kinesis_group --records 40000 --consumers 1,2,4 --rounds 3

Each run: fresh streams on our own moto server (4 shards), a fresh DynamoDB lease table, the stream filled first
(PutRecords of 500, envelopes with customer ids), then K processes exactly as the runtimes start them
(`python -m server.kinesis --group-member i`, no sinks, model from the local cache with MLflow out of the way). The
rate is records answered between the first result and the last, read from the consumers' own Prometheus counters
(kinesis_results_out_total), so reading the results back costs the emulator nothing. Rounds alternate the group
sizes so a noisy neighbour hits them all alike. Everything shares the machine's cores with the moto server: the
figures say how far the group scales on one host, not on many. Figures only; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.bench_kinesis import start_moto
from bench.harness import bench_model, cache_model, sample_records
from mlops import aws
from native.throwaway import VENV_BIN, free_port, free_port_run, start_process, stop_process

SHARDS = 4


def results_out(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except requests.RequestException:
            continue
        total += sum(float(v) for v in re.findall(r"^kinesis_results_out_total (\S+)$", text, re.M))
    return total


def one_run(consumers: int, records: list[dict[str, Any]], count: int, base_env: dict[str, str], scratch: Path) -> dict:
    tag = uuid.uuid4().hex[:6]
    streams = {"in": f"g-{tag}-in", "out": f"g-{tag}-out", "dead": f"g-{tag}-dead"}
    from mlops.settings import load_settings

    settings = load_settings("local", aws_endpoint_url=base_env["AWS_ENDPOINT_URL"])
    kinesis = aws.client("kinesis", settings)
    for name in streams.values():
        aws.ensure_stream(kinesis, name, SHARDS if name == streams["in"] else 1)
    for start in range(0, count, 500):
        batch = [
            {"request_id": f"{tag}-{i}", "record": records[i % len(records)]}
            for i in range(start, min(start + 500, count))
        ]
        kinesis.put_records(
            StreamName=streams["in"],
            Records=[{"Data": json.dumps(e).encode(), "PartitionKey": e["request_id"]} for e in batch],
        )
    metrics_base = free_port_run(consumers)
    env = {
        **base_env,
        "KINESIS_PREDICTIONS_STREAM": streams["in"],
        "KINESIS_RESULTS_STREAM": streams["out"],
        "KINESIS_DEAD_LETTER_STREAM": streams["dead"],
        "KINESIS_LEASE_TABLE": f"bench-leases-{tag}",
        "KINESIS_METRICS_PORT": str(metrics_base),
    }
    ports = [metrics_base + i for i in range(consumers)]
    processes = [
        start_process(
            [str(VENV_BIN / "python"), "-m", "server.kinesis", "--group-member", str(i), "--no-sinks"],
            scratch / f"consumer-{tag}-{i}.log",
            env,
        )
        for i in range(consumers)
    ]
    first: tuple[float, float] | None = None
    owners: list[dict[str, Any]] = []
    deadline = time.monotonic() + 900
    try:
        while True:
            done = results_out(ports)
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done)
            if done >= count:
                owners = aws.client("dynamodb", settings).scan(TableName=env["KINESIS_LEASE_TABLE"])["Items"]
                break
            dead = [p for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise SystemExit(f"consumers died or stalled at {done:.0f}/{count}; logs in {scratch}")
            time.sleep(0.1)
    finally:
        for process in processes:
            stop_process(process, timeout=30)
    assert first is not None
    seconds = now - first[0]
    return {
        "consumers": consumers,
        "rate": (count - first[1]) / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        "lease_owners": len({item.get("leaseOwner", {}).get("S") for item in owners} - {None}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--consumers", default="1,2,3", help="group sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.consumers.split(",")]

    from mlops.settings import load_settings

    scratch = Path(tempfile.mkdtemp(prefix="bench-kinesis-group-"))
    settings = load_settings()
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    cache_model(model_dir, scratch / "state", run_id)
    from mlops.model import ModelBundle

    spec = ModelBundle.from_model_dir(model_dir).spec
    records = [
        {**record, spec.id_column: f"{700000000 + i}"} if spec.id_column else record
        for i, record in enumerate(sample_records(spec))
    ]
    moto, url = start_moto()
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "KINESIS_"))},
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nobody: the model comes from the cache
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DRIFT_SERVICE_URL": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    print(
        f"{args.records:,} records on {SHARDS} shards; group sizes {sizes}; {args.rounds} rounds; "
        f"{os.cpu_count()} cores shared with the moto server; model {run_id}",
        flush=True,
    )
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    try:
        for round_no in range(args.rounds):
            for n in sizes if round_no % 2 == 0 else reversed(sizes):
                result = one_run(n, records, args.records, base_env, scratch)
                runs[n].append(result)
                print(
                    f"  round {round_no + 1}: {n} consumer(s): {result['rate']:8.0f} records/s "
                    f"({result['seconds']:.1f} s; leases held by {result['lease_owners']})",
                    flush=True,
                )
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    one = statistics.median(r["rate"] for r in runs[sizes[0]])
    print(f"\n{'consumers':>10} {'records/s (median)':>20} {'vs ' + str(sizes[0]):>8}")
    for n in sizes:
        rate = statistics.median(r["rate"] for r in runs[n])
        print(f"{n:>10} {rate:>20.0f} {rate / one:>8.2f}")


if __name__ == "__main__":
    sys.exit(main())
