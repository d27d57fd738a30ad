"""Scoring by customer id vs by full record, on the same gunicorn API, same model, same client, same run.

    .venv/bin/python -m bench.bench_by_id --model-dir DIR              # a downloaded MLflow model folder
    .venv/bin/python -m bench.bench_by_id                              # the model RUN_ID / alias names (MLflow)
    .venv/bin/python -m bench.bench_by_id --online-store redis://127.0.0.1:6379/15   # Redis instead of SQLite

`GET /customers/<id>/churn` (online-store lookup + the same validator and model) against `POST /predict` with the
customer's full record, closed loop at `--concurrency` keep-alive connections, alternating rounds (`--rounds`), each
bounded by `--requests` and `--max-seconds`. Prints p50/p99 and requests/s per round and the by-id/full ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Result, Target, bench_model, cache_model, closed_loop  # noqa: E402
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--online-store", default=None, help="ONLINE_STORE_URI (default: SQLite in a temp folder)")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--max-seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="API workers (default: API_WORKERS)")
    args = parser.parse_args(argv)

    from mlops.contract import clean
    from mlops.data import generate_bank_churners
    from mlops.materialize import feature_rows
    from mlops.model import ModelBundle
    from mlops.settings import load_settings
    from mlops.stores.online import RedisOnlineStore, SQLiteOnlineStore

    settings = load_settings()
    workers = args.workers or settings.api_workers
    scratch = Path(tempfile.mkdtemp(prefix="bench-by-id-"))
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    cache_model(model_dir, scratch / "state", run_id)
    spec = ModelBundle.from_model_dir(model_dir).spec
    rows = feature_rows(clean(generate_bank_churners(args.customers, seed=11), spec), spec)
    online_uri = args.online_store or f"sqlite:///{scratch / 'online.sqlite'}"
    store = RedisOnlineStore(online_uri) if online_uri.startswith("redis") else SQLiteOnlineStore(online_uri)
    store.write(spec.name, rows, "bench-snapshot")
    by_id = [("GET", f"/customers/{customer}/churn", None) for customer, _ in rows]
    full = [
        ("POST", "/predict", json.dumps({**features, spec.id_column: customer}).encode()) for customer, features in rows
    ]
    port, dead = free_port(), free_port()
    env = {
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead}",
        "API_PORT": str(port),
        "API_WORKERS": str(workers),
        "DRIFT_SERVICE_URL": "",
        "ONLINE_STORE_URI": online_uri,
        "OMP_NUM_THREADS": "1",
    }
    print(f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(
        f"model {run_id}; {workers} worker(s); concurrency {args.concurrency}; {os.cpu_count()} cores; "
        f"online store {online_uri.split('://')[0]} with {len(rows)} customers; prediction log on (SQLite)"
    )
    log = scratch / "api.log"

    def target(calls: list[tuple[str, str, bytes | None]]) -> Target:
        return Target("api", port, "", [], calls)

    process = start_process([str(VENV_BIN / "python"), "-m", "server.api"], log, env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 180, process, log)
        closed_loop(target(by_id), args.concurrency, 300, 30)  # warm both paths
        closed_loop(target(full), args.concurrency, 300, 30)
        print(f"\n{'round':<6} {'path':<28} {'requests':>9} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        totals: dict[str, list[Result]] = {"by id": [], "full record": []}
        for round_ in range(1, args.rounds + 1):
            for name, requests_ in (("by id", by_id), ("full record", full)):
                result = closed_loop(target(requests_), args.concurrency, args.requests, args.max_seconds)
                totals[name].append(result)
                label = "GET /customers/<id>/churn" if name == "by id" else "POST /predict (full record)"
                print(
                    f"{round_:<6} {label:<28} {len(result.latencies):>9} {result.errors:>7} "
                    f"{result.throughput:>9.0f} {result.pct(0.5):>8.2f} {result.pct(0.99):>8.2f}"
                )
        ids, records = totals["by id"], totals["full record"]
        rate = sum(r.throughput for r in ids) / sum(r.throughput for r in records)
        p99 = sum(r.pct(0.99) for r in ids) / sum(r.pct(0.99) for r in records)
        print(f"\nby id / full record: throughput {rate:.2f}x, p99 {p99:.2f}x (mean over {args.rounds} rounds)")
    except BaseException:
        print(f"--- last lines of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop_process(process, 20)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
