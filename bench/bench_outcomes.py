"""Outcomes: how fast they are taken in, and what recomputing the realized metrics costs.

    .venv/bin/python bench/bench_outcomes.py                       # 120k logged predictions, short defaults
    .venv/bin/python bench/bench_outcomes.py --predictions 200000 --file-rows 100000 --endpoint 40000

1. POST /outcomes on the real gunicorn API (API_WORKERS workers; no model needed for outcomes): lists of
   --list-size outcomes by request id, then one outcome per request (keep-alive, one client thread).
2. A --file-rows CSV by customer id through `python -m mlops.ingest_outcomes` (what `make outcomes` runs): wall time
   of the whole command (start-up included) and of the ingestion alone (in process, same file).
3. The drift service's recomputation for one model run over a --window of settlements: read + every metric
   (median and p99 of --repeats runs).

Everything runs on a fresh SQLite prediction log in a temporary folder, seeded with --predictions predictions.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlops.outcomes import read_outcomes_file  # noqa: E402
from mlops.performance import realized  # noqa: E402
from mlops.spec import FeatureSpec  # noqa: E402
from mlops.stores.outcomes import SQLiteOutcomeStore  # noqa: E402
from mlops.stores.prediction_log import SQLiteStore, make_entry  # noqa: E402

VENV_PYTHON = Path(sys.executable)
LABELS = ("Existing Customer", "Attrited Customer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(uri: str, count: int) -> list[tuple[str, str, int]]:
    """`count` predictions of one model run, an hour old; returns (request id, customer id, true label) each."""
    rng = np.random.default_rng(0)
    store = SQLiteStore(uri)
    start = datetime.now(UTC) - timedelta(hours=1)
    truth: list[tuple[str, str, int]] = []
    for chunk in range(0, count, 5000):
        entries = []
        for i in range(chunk, min(count, chunk + 5000)):
            label = int(rng.uniform() < 0.16)
            chance = float(np.clip(0.5 * label + 0.6 * rng.uniform(), 0, 1))
            request_id, customer = f"req-{i}", f"{700000000 + i}"
            entries.append(make_entry({"i": i}, chance, "bench-run", "http", request_id, start, customer_id=customer))
            truth.append((request_id, customer, label))
        store.write_many(entries)
    return truth


def endpoint(port: int, truth: list[tuple[str, str, int]], list_size: int, singles: int) -> None:
    url = f"http://127.0.0.1:{port}/outcomes"
    body = [{"request_id": r, "label": LABELS[y]} for r, _, y in truth]
    with requests.Session() as session:
        started = time.perf_counter()
        settled = 0
        for start in range(0, len(body), list_size):
            answer = session.post(url, json=body[start : start + list_size], timeout=120)
            answer.raise_for_status()
            settled += answer.json()["settled"]
        elapsed = time.perf_counter() - started
    print(f"POST /outcomes, lists of {list_size}: {len(body)} outcomes ({settled} settled) in {elapsed:.2f} s = "
          f"{len(body) / elapsed:,.0f} outcomes/s")  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    extra = [{"clientnum": c, "label": LABELS[y]} for _, c, y in truth[:singles]]
    started = time.perf_counter()
    for outcome in extra:
        sent = time.perf_counter()
        connection.request("POST", "/outcomes", body=json.dumps(outcome), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        assert response.status == 200, response.status
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    print(f"POST /outcomes, one per request (by customer, already settled -> duplicates): {len(extra)} in "
          f"{elapsed:.2f} s = {len(extra) / elapsed:,.0f} req/s, p50 {statistics.median(ordered) * 1e3:.2f} ms, "
          f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1e3:.2f} ms")  # fmt: skip


def file_ingest(folder: Path, env: dict[str, str], truth: list[tuple[str, str, int]], rows: int) -> None:
    path = folder / "outcomes.csv"
    chosen = truth[-rows:]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["CLIENTNUM", "Attrition_Flag", "observed_at"])
        now = datetime.now(UTC).isoformat(timespec="seconds")  # a bare date is midnight: before these predictions
        writer.writerows([c, LABELS[y], now] for _, c, y in chosen)
    command = [str(VENV_PYTHON), "-m", "mlops.ingest_outcomes", str(path)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"make outcomes (python -m mlops.ingest_outcomes), {rows:,}-row CSV by customer id: {wall:.2f} s wall "
          f"incl. start-up = {rows / wall:,.0f} outcomes/s; settled {report['settled']:,}")  # fmt: skip
    spec = FeatureSpec.load(ROOT / "features.yaml")
    started = time.perf_counter()
    outcomes = read_outcomes_file(str(path), spec)
    parsed = time.perf_counter() - started
    store = SQLiteOutcomeStore(env["PREDICTION_LOG_URI"])
    started = time.perf_counter()
    again = store.ingest(outcomes)
    ingested = time.perf_counter() - started
    print(f"  in process: read + validate {parsed:.2f} s ({rows / parsed:,.0f} rows/s), settle (all duplicates "
          f"now: {again.duplicates:,}) {ingested:.2f} s ({rows / ingested:,.0f} outcomes/s)")  # fmt: skip


def recompute(uri: str, window: int, repeats: int) -> None:
    store = SQLiteOutcomeStore(uri)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = store.settled("bench-run", limit=window)
        figures = realized([r["label"] for r in rows], [r["prediction"] for r in rows], 200)
        timings.append(time.perf_counter() - started)
    ordered = sorted(timings)
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1e3
    print(f"realized metrics over a {len(rows):,}-settlement window (read + ROC/PR AUC, Brier, log loss, ECE): "
          f"median {statistics.median(ordered) * 1e3:.1f} ms, p99 {p99:.1f} ms "
          f"over {repeats} runs; ROC AUC {getattr(figures, 'roc_auc', float('nan')):.4f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=120_000)
    parser.add_argument("--endpoint", type=int, default=20_000, help="outcomes sent through POST /outcomes in lists")
    parser.add_argument("--list-size", type=int, default=500)
    parser.add_argument("--singles", type=int, default=1000, help="outcomes sent one per request")
    parser.add_argument("--file-rows", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.endpoint + args.file_rows > args.predictions:
        parser.error("--endpoint + --file-rows must not exceed --predictions (each outcome settles its own)")
    print(f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    with tempfile.TemporaryDirectory(prefix="bench-outcomes-") as scratch:
        folder = Path(scratch)
        uri = f"sqlite:///{folder / 'predictions.sqlite'}"
        started = time.perf_counter()
        truth = seed(uri, args.predictions)
        print(f"seeded {len(truth):,} predictions in {time.perf_counter() - started:.1f} s")
        port = free_port()
        env = {
            **os.environ,
            "STATE_DIR": str(folder),
            "PREDICTION_LOG_URI": uri,
            "API_PORT": str(port),
            "API_WORKERS": str(args.workers),
            "DRIFT_SERVICE_URL": "",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # outcomes need no model: nothing is loaded
            "MAX_BATCH_RECORDS": str(max(1000, args.list_size)),
        }
        log = (folder / "api.log").open("wb")
        api = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "server.api"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.3)
            endpoint(port, truth[: args.endpoint], args.list_size, args.singles)
        finally:
            api.terminate()
            api.wait(timeout=30)
        file_ingest(folder, env, truth, args.file_rows)
        recompute(uri, args.window, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
