"""Soak: our gunicorn API at half of its measured saturation for a long time (default 600 s).

    .venv/bin/python -m bench.bench_soak                  # model named by RUN_ID / alias, from MLflow
    .venv/bin/python -m bench.bench_soak --model-dir DIR  # a downloaded MLflow model folder
    .venv/bin/python -m bench.bench_soak --seconds 60     # shorter

First saturation is measured closed-loop (bench.harness's client); then an open-loop client sends at 50% of it,
one record per request, in intervals of `--interval` seconds (latency from each request's scheduled time, so no
coordinated omission). Printed: per interval the rate achieved, errors, p50 and p99; at the end the error total,
p99 of the last interval against the first (the baseline), and the RSS of every worker at start and end. The
prediction log (SQLite) is on, the drift sink off, so the store's writer is part of the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Target, bench_model, cache_model, closed_loop, open_loop, sample_records
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http


def worker_pids(master: int) -> list[int]:
    """gunicorn's workers: the master's children (Linux /proc)."""
    children: list[int] = []
    task_dir = Path(f"/proc/{master}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        text = (task / "children").read_text().split()
        children.extend(int(pid) for pid in text)
    return sorted(children)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=600, help="soak length (default 600)")
    parser.add_argument("--interval", type=float, default=10, help="seconds per reported interval")
    parser.add_argument("--fraction", type=float, default=0.5, help="of measured saturation")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="default: API_WORKERS")
    args = parser.parse_args(argv)

    from mlops.model import ModelBundle
    from mlops.settings import load_settings

    settings = load_settings()
    workers = args.workers or settings.api_workers
    scratch = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    cache_model(model_dir, scratch / "state", run_id)
    records = sample_records(ModelBundle.from_model_dir(model_dir).spec)
    port, dead_port = free_port(), free_port()
    env = {
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead_port}",  # from the cache: MLflow out of the way
        "API_PORT": str(port),
        "API_WORKERS": str(workers),
        "DRIFT_SERVICE_URL": "",
        "API_KEY": "",
        "RATE_LIMIT": "",
        "OMP_NUM_THREADS": "1",
    }
    target = Target("ours", port, "/predict", [json.dumps(r).encode() for r in records])
    log = scratch / "api.log"
    process = start_process([str(VENV_BIN / "python"), "-m", "server.api"], log, env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 180, process, log)
        closed_loop(target, args.concurrency, 500, 30)  # warm
        saturated = closed_loop(target, args.concurrency, 20_000, 15)
        rate = args.fraction * saturated.throughput
        pids = worker_pids(process.pid)
        rss_start = {pid: rss_mib(pid) for pid in pids}
        print(
            f"model {run_id}; {workers} worker(s); {os.cpu_count()} cores; saturation {saturated.throughput:.0f} req/s "
            f"(closed loop, {args.concurrency} connections, p99 {saturated.pct(0.99):.2f} ms, "
            f"errors {saturated.errors}); soak at {args.fraction:.0%} = {rate:.0f} req/s for {args.seconds:.0f} s"
        )
        print(f"{'t (s)':>6} {'req/s':>7} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}")
        intervals = []
        started = time.monotonic()
        while time.monotonic() - started < args.seconds - 0.5:
            length = min(args.interval, args.seconds - (time.monotonic() - started))
            result = open_loop(target, rate, length, args.concurrency)
            intervals.append(result)
            elapsed = time.monotonic() - started
            print(
                f"{elapsed:6.0f} {result.throughput:7.0f} {result.errors:6d} {result.pct(0.5):7.2f} "
                f"{result.pct(0.99):7.2f}",
                flush=True,
            )
        alive = worker_pids(process.pid)
        errors = sum(r.errors for r in intervals)
        answered = sum(len(r.latencies) for r in intervals)
        print(f"\nsoak {time.monotonic() - started:.0f} s: {answered} answered, {errors} errors")
        first, last = intervals[0], intervals[-1]
        print(
            f"p99 first interval {first.pct(0.99):.2f} ms (baseline), last {last.pct(0.99):.2f} ms, "
            f"ratio {last.pct(0.99) / first.pct(0.99):.2f}"
        )
        for pid in sorted(set(pids) | set(alive)):
            before = rss_start.get(pid, float("nan"))
            after = rss_mib(pid) if pid in alive else float("nan")
            note = "" if pid in pids and pid in alive else " (worker replaced during the soak)"
            print(f"worker {pid}: RSS start {before:.1f} MiB, end {after:.1f} MiB, ratio {after / before:.3f}{note}")
        print(f"master {process.pid}: RSS end {rss_mib(process.pid):.1f} MiB")
    except BaseException:
        print(f"--- last lines of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop_process(process, 20)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
