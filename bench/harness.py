"""What the benchmarks share: a Python load client and the model they serve (servers are started and stopped by
native.throwaway, as the tests start theirs).

The Python client (`closed_loop`, `open_loop`: threads with keep-alive `http.client` connections) is for
comparisons where both sides pay the same client cost (by id vs full record, shadow on vs off, the soak test).
Throughput against peers is measured with a compiled client instead (bench.loadgen: wrk, pinned to its own core).

The model: `--model-dir` as given, else the one RUN_ID / the alias names in MLflow, else (MLflow not reachable) one
trained here on generated rows, so every benchmark runs on a fresh machine with nothing started.
"""

from __future__ import annotations

import http.client
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Target:
    """Where the load goes: `POST path` with the bodies in turn, or, with `calls`, each (method, path, body)."""

    name: str
    port: int
    path: str
    bodies: list[bytes]
    calls: list[tuple[str, str, bytes | None]] | None = None

    def call(self, i: int) -> tuple[str, str, bytes | None]:
        if self.calls:
            return self.calls[i % len(self.calls)]
        return "POST", self.path, self.bodies[i % len(self.bodies)]


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


class _Client:
    """One keep-alive connection per load thread; reconnects after a failed request (counted as an error)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)

    def send(self, i: int) -> bool:
        method, path, body = self.target.call(i)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.target.port, timeout=30)
            return False

    def close(self) -> None:
        self.connection.close()


def _in_threads(concurrency: int, work: Callable[[], tuple[list[float], int]]) -> tuple[list[float], int]:
    """Run `work() -> (latencies, errors)` on `concurrency` threads; all their latencies and errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def thread_main() -> None:
        mine, failed = work()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=thread_main) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def closed_loop(target: Target, concurrency: int, total: int, max_seconds: float) -> Result:
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds

    def work() -> tuple[list[float], int]:
        client, mine, failed = _Client(target), [], 0
        for i in counter:  # the shared iterator hands out the bounded count
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            if client.send(i):
                mine.append(time.perf_counter() - started)
            else:
                failed += 1
        client.close()
        return mine, failed

    started = time.perf_counter()
    latencies, errors = _in_threads(concurrency, work)
    return Result(time.perf_counter() - started, latencies, errors)


def open_loop(target: Target, rate: float, seconds: float, concurrency: int) -> Result:
    """Requests scheduled at a fixed rate, spread over `concurrency` connections; latency from the schedule."""
    count = int(rate * seconds)
    start = time.perf_counter() + 0.2
    schedule = iter(enumerate(start + i / rate for i in range(count)))
    give_up = start + 2 * seconds + 5  # bounded time even when the server falls behind (late ones count as errors)

    def work() -> tuple[list[float], int]:
        client, mine, failed = _Client(target), [], 0
        for i, due in schedule:
            if time.perf_counter() > give_up:  # far behind schedule: the server cannot take this rate
                failed += 1
                continue
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if client.send(i):
                mine.append(time.perf_counter() - due)
            else:
                failed += 1
        client.close()
        return mine, failed

    latencies, errors = _in_threads(concurrency, work)
    return Result(time.perf_counter() - start, latencies, errors)


def sample_records(spec: Any, n: int = 500) -> list[dict[str, Any]]:
    from mlops.data import clean, generate_bank_churners

    frame = clean(generate_bank_churners(n, seed=5), spec, require_target=False)[spec.feature_columns]
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def bench_model(model_dir: Path | None, settings: Any, scratch: Path | None = None) -> tuple[Path, str]:
    """(model folder, run id): `--model-dir` as given, else the run RUN_ID or the alias names, from MLflow, else
    (MLflow unreachable, `scratch` given) a model trained here on generated rows."""
    if model_dir:
        return model_dir, "bench-" + model_dir.resolve().parent.name
    from mlops import registry

    try:
        registry.check_mlflow(settings.mlflow_tracking_uri, timeout=2)
        run_id, _ = registry.resolve_run_id(settings)
        return registry.download_model(settings, run_id), run_id
    except Exception as error:  # unreachable, no alias yet, no such run
        if scratch is None:
            raise
        print(f"no model from MLflow ({type(error).__name__}: {str(error)[:160]}); training one on generated rows")
        return synthetic_model_dir(scratch / "synthetic-model"), SYNTHETIC_RUN_ID


SYNTHETIC_RUN_ID = "bench-synthetic"


def synthetic_model_dir(folder: Path, rows: int = 10_000, rounds: int = 200, max_depth: int = 5) -> Path:
    """A model folder (booster + spec) trained on generated rows: a size like a tuned model's (200 trees, depth 5)."""
    import numpy as np
    import xgboost as xgb

    from batch.testing import save_model_dir
    from mlops.data import LABEL, clean, generate_bank_churners
    from mlops.encoding import FeatureEncoder
    from mlops.model import ModelBundle
    from mlops.settings import PROJECT_ROOT
    from mlops.spec import FeatureSpec

    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    frame = clean(generate_bank_churners(rows, seed=3), spec)
    matrix = xgb.DMatrix(FeatureEncoder(spec).encode_frame(frame), label=frame[LABEL].to_numpy(), missing=np.nan)
    params = {"objective": "binary:logistic", "max_depth": max_depth, "eta": 0.05, "nthread": 2, "seed": 3}
    booster = xgb.train(params, matrix, rounds)
    save_model_dir(ModelBundle(booster=booster, spec=spec, run_id=SYNTHETIC_RUN_ID), folder)
    (folder / "MLmodel").write_text("# a benchmark's model, trained on generated rows; never logged to MLflow\n")
    return folder


def cache_model(model_dir: Path, state_dir: Path, run_id: str) -> None:
    """Put the model where our server looks first (its model cache), so it serves it with MLflow out of the way."""
    shutil.copytree(model_dir, state_dir / "model-cache" / run_id / "model")
