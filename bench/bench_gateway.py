"""What the API gateway costs: POST /predict straight to a replica vs through the nginx gateway, side by side.

    .venv/bin/python -m bench.bench_gateway                   # 2 replicas, 4 connections, 3 rounds of 3,000 requests
    .venv/bin/python -m bench.bench_gateway --replicas 1 --connections 8

The replicas are started as supervisord starts them (`python -m server.api --replica i`, API_WORKERS=1 each, model
from the local cache, MLflow out of the way, no prediction log); the gateway is Debian's nginx rendered by
`python -m server.gateway_native`. Each round sends the same records to replica 0 directly and to the gateway, one
after the other (order alternated), from the same Python client (keep-alive connections), so the difference is the
gateway's hop. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.harness import Target, bench_model, cache_model, closed_loop, sample_records
from native.throwaway import VENV_BIN, free_port, free_port_run, start_process, stop_process, wait_for_http


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3_000, help="per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    from mlops.model import ModelBundle
    from mlops.settings import load_settings

    scratch = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    model_dir, run_id = bench_model(args.model_dir, load_settings(), scratch)
    cache_model(model_dir, scratch / "state", run_id)
    spec = ModelBundle.from_model_dir(model_dir).spec
    bodies = [json.dumps(record).encode() for record in sample_records(spec, 200)]
    replica_port = free_port_run(args.replicas)
    gateway_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "API_"))},
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nobody: the model comes from the cache
        "PREDICTION_LOG_URI": "",
        "DRIFT_SERVICE_URL": "",
        "API_PORT": str(gateway_port),
        "API_REPLICA_PORT": str(replica_port),
        "API_REPLICAS": str(args.replicas),
        "API_WORKERS": "1",
        "API_TRUSTED_PROXIES": "1",
        "OMP_NUM_THREADS": "1",
    }
    python = str(VENV_BIN / "python")
    processes = []
    try:
        for i in range(args.replicas):
            log = scratch / f"replica-{i}.log"
            processes.append(start_process([python, "-m", "server.api", "--replica", str(i)], log, env))
            wait_for_http(f"http://127.0.0.1:{replica_port + i}/health", 120, processes[-1], log)
        log = scratch / "gateway.log"
        processes.append(start_process([python, "-m", "server.gateway_native"], log, env))
        wait_for_http(f"http://127.0.0.1:{gateway_port}/health", 30, processes[-1], log)
        direct = Target("replica 0, direct", replica_port, "/predict", bodies)
        gateway = Target(f"gateway ({args.replicas} replicas)", gateway_port, "/predict", bodies)
        print(
            f"{args.requests} requests a run, {args.connections} connections, {args.rounds} rounds; "
            f"{args.replicas} replica(s) x 1 worker; {os.cpu_count()} cores; model {run_id}",
            flush=True,
        )
        runs: dict[str, list] = {direct.name: [], gateway.name: []}
        for round_no in range(args.rounds):
            for target in (direct, gateway) if round_no % 2 == 0 else (gateway, direct):
                result = closed_loop(target, args.connections, args.requests, 120)
                runs[target.name].append(result)
                print(
                    f"  round {round_no + 1}: {target.name:<24} {result.throughput:7.0f} req/s  p50 "
                    f"{result.pct(0.5):5.2f} ms  p99 {result.pct(0.99):5.2f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=30)
    print(f"\n{'':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   (medians over rounds)")
    summary = {}
    for name, results in runs.items():
        summary[name] = [
            statistics.median(r.throughput for r in results),
            statistics.median(r.pct(0.5) for r in results),
            statistics.median(r.pct(0.99) for r in results),
        ]
        print(f"{name:<26} {summary[name][0]:>8.0f} {summary[name][1]:>8.2f} {summary[name][2]:>8.2f}")
    (d_rate, d_p50, d_p99), (g_rate, g_p50, g_p99) = summary.values()
    print(f"{'gateway / direct':<26} {g_rate / d_rate:>8.2f} {g_p50 / d_p50:>8.2f} {g_p99 / d_p99:>8.2f}")


if __name__ == "__main__":
    main()
