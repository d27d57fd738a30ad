"""HTTP, one record per request: our gunicorn server against `mlflow models serve` of the same model, with the
same loopback client at the same concurrency, in one run. Then the p99 of each at ~70% of its own saturation.

    .venv/bin/python -m bench.bench_http --model-dir DIR    # a downloaded MLflow model folder (both servers use it)
    .venv/bin/python -m bench.bench_http                    # the model RUN_ID / alias names, downloaded from MLflow

The client: `--concurrency` threads, each with one keep-alive `http.client` connection, a bounded number of
requests (`--requests`) and time (`--max-seconds`). Saturation is measured closed-loop; the 70% run is open-loop at
a fixed rate, latency counted from each request's scheduled time (no coordinated omission).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Target:
    name: str
    port: int
    path: str
    bodies: list[bytes]


@dataclass
class Result:
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else float("nan")


def _post(connection: http.client.HTTPConnection, target: Target, body: bytes) -> bool:
    connection.request("POST", target.path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status == 200


def closed_loop(target: Target, concurrency: int, total: int, max_seconds: float) -> Result:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        mine: list[float] = []
        failed = 0
        for i in counter:  # the shared iterator hands out the bounded count
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            try:
                ok = _post(connection, target, target.bodies[i % len(target.bodies)])
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
                ok = False
            if ok:
                mine.append(time.perf_counter() - started)
            else:
                failed += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(time.perf_counter() - started, latencies, errors[0])


def open_loop(target: Target, rate: float, seconds: float, concurrency: int) -> Result:
    """Requests scheduled at a fixed rate, spread over `concurrency` connections; latency from the schedule."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2
    schedule = iter(start + i / rate for i in range(count))
    give_up = start + 2 * seconds + 5  # bounded time even when the server falls behind (late ones count as errors)

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        mine: list[float] = []
        failed = 0
        for i, due in enumerate(schedule):
            if time.perf_counter() > give_up:  # far behind schedule: the server cannot take this rate
                failed += 1
                continue
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                ok = _post(connection, target, target.bodies[i % len(target.bodies)])
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
                ok = False
            if ok:
                mine.append(time.perf_counter() - due)
            else:
                failed += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(time.perf_counter() - start, latencies, errors[0])


def wait_ready(url: str, process: subprocess.Popen[Any], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {timeout}s; see {log}")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[Any]) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def sample_records(spec: Any, n: int = 500) -> list[dict[str, Any]]:
    from mlops.data import clean, generate_bank_churners

    frame = clean(generate_bank_churners(n, seed=5), spec, require_target=False)[spec.feature_columns]
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def bench_model(model_dir: Path | None, settings: Any) -> tuple[Path, str]:
    """(model folder, run id): `--model-dir` as given, else the run RUN_ID or the alias names, from MLflow."""
    if model_dir:
        return model_dir, "bench-" + model_dir.resolve().parent.name
    from mlops import registry

    run_id, _ = registry.resolve_run_id(settings)
    return registry.download_model(settings, run_id), run_id


def cache_model(model_dir: Path, state_dir: Path, run_id: str) -> None:
    """Put the model where our server looks first (its model cache), so it serves it with MLflow out of the way."""
    shutil.copytree(model_dir, state_dir / "model-cache" / run_id / "model")


def report(label: str, ours: Result, theirs: Result) -> None:
    print(f"\n{label}")
    print(f"{'server':<22} {'requests':>9} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, result in (("ours (gunicorn)", ours), ("mlflow models serve", theirs)):
        print(
            f"{name:<22} {len(result.latencies):>9} {result.errors:>7} {result.throughput:>9.0f} "
            f"{result.pct(0.5):>8.2f} {result.pct(0.99):>8.2f}"
        )
    if theirs.throughput:
        print(
            f"throughput ratio ours/mlflow: {ours.throughput / theirs.throughput:.2f}x; "
            f"p99 ratio: {ours.pct(0.99) / theirs.pct(0.99):.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--max-seconds", type=float, default=20)
    parser.add_argument("--load-seconds", type=float, default=10, help="length of each 70%% run")
    parser.add_argument("--workers", type=int, default=None, help="both servers (default: API_WORKERS)")
    args = parser.parse_args(argv)

    from mlops.model import ModelBundle
    from mlops.settings import load_settings

    settings = load_settings()
    workers = args.workers or settings.api_workers
    scratch = Path(tempfile.mkdtemp(prefix="bench-http-"))
    model_dir, run_id = bench_model(args.model_dir, settings)
    cache_model(model_dir, scratch / "state", run_id)  # our server serves the same files
    spec = ModelBundle.from_model_dir(model_dir).spec
    records = sample_records(spec)

    ours_port, mlflow_port, dead_port = free_port(), free_port(), free_port()
    ours_env = {
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead_port}",
        "API_PORT": str(ours_port),
        "API_WORKERS": str(workers),
        "DRIFT_SERVICE_URL": "",
        "OMP_NUM_THREADS": "1",
    }
    mlflow_env = {  # it execs `uvicorn`, which must be on PATH
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ours = Target("ours", ours_port, "/predict", [json.dumps(r).encode() for r in records])
    theirs = Target(
        "mlflow", mlflow_port, "/invocations", [json.dumps({"dataframe_records": [r]}).encode() for r in records]
    )
    print(
        f"model {run_id} from {model_dir}; {workers} worker(s) each; concurrency {args.concurrency}; "
        f"{os.cpu_count()} cores; prediction log on (SQLite), drift sink off"
    )
    ours_log, mlflow_log = scratch / "ours.log", scratch / "mlflow.log"
    ours_process = start([str(VENV_BIN / "python"), "-m", "server.predict_api"], ours_env, ours_log)
    mlflow_process = start(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(mlflow_port),
            "-w",
            str(workers),
        ],
        mlflow_env,
        mlflow_log,
    )
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/health", ours_process, ours_log)
        wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", mlflow_process, mlflow_log)
        for target in (ours, theirs):  # same answer from both, and warm
            closed_loop(target, args.concurrency, 300, 30)
        a = json.loads(requests.post(f"http://127.0.0.1:{ours_port}/predict", data=ours.bodies[0], timeout=5).text)
        b = requests.post(
            f"http://127.0.0.1:{mlflow_port}/invocations",
            data=theirs.bodies[0],
            headers={"Content-Type": "application/json"},
            timeout=5,
        ).json()
        print(f"same record: ours {a['churn chance']:.6f}, mlflow {b['predictions'][0]:.6f}")

        saturated_ours = closed_loop(ours, args.concurrency, args.requests, args.max_seconds)
        saturated_theirs = closed_loop(theirs, args.concurrency, args.requests, args.max_seconds)
        report(f"saturation (closed loop, {args.concurrency} connections)", saturated_ours, saturated_theirs)

        rate_ours = 0.7 * saturated_ours.throughput
        rate_theirs = 0.7 * saturated_theirs.throughput
        loaded_ours = open_loop(ours, rate_ours, args.load_seconds, args.concurrency)
        loaded_theirs = open_loop(theirs, rate_theirs, args.load_seconds, args.concurrency)
        report(
            f"~70% of each server's saturation (open loop: ours {rate_ours:.0f} req/s, mlflow {rate_theirs:.0f} req/s)",
            loaded_ours,
            loaded_theirs,
        )
        same_rate = open_loop(theirs, rate_ours, args.load_seconds, args.concurrency)
        print(
            f"\nmlflow at our 70% rate ({rate_ours:.0f} req/s): {same_rate.throughput:.0f} req/s achieved, "
            f"p50 {same_rate.pct(0.5):.2f} ms, p99 {same_rate.pct(0.99):.2f} ms, errors {same_rate.errors}"
        )
        print(f"\nstatistics: ours p50 of saturated run {statistics.median(saturated_ours.latencies) * 1e3:.2f} ms")
    except BaseException:
        for log in (ours_log, mlflow_log):
            print(f"--- last lines of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop(ours_process)
        stop(mlflow_process)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
