"""Batch scoring: rows/s of ModelService on 10k records against the bare booster's `inplace_predict` on the
already-encoded float32 array (the floor nothing in Python can beat). Goal: ratio >= 0.7.

    .venv/bin/python -m bench.bench_batch                       # the model RUN_ID / alias names, from MLflow
    .venv/bin/python -m bench.bench_batch --model-dir DIR       # a downloaded MLflow model folder
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _time(action: Callable[[], Any], repeats: int) -> list[float]:
    action()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="MLflow model folder (default: from MLflow)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"

    import tempfile

    from bench.harness import bench_model
    from mlops.data import clean, generate_bank_churners
    from mlops.model import ModelBundle
    from mlops.model_service import ModelService
    from mlops.settings import load_settings

    model_dir, run_id = bench_model(args.model_dir, load_settings(), Path(tempfile.mkdtemp(prefix="bench-batch-")))
    service = ModelService(ModelBundle.from_model_dir(model_dir, run_id=run_id), "model dir")
    spec = service.spec
    frame = clean(generate_bank_churners(args.rows, seed=123), spec, require_target=False)[spec.feature_columns]
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    valid = service.validate(records)
    encoded = service.bundle.encoder.encode_records(valid)
    booster = service.bundle.booster

    runs = {
        "bare booster.inplace_predict(encoded)": _time(
            lambda: booster.inplace_predict(encoded, validate_features=False), args.repeats
        ),
        "ModelService.predict_records(records)": _time(lambda: service.predict_records(valid), args.repeats),
        "ModelService validate + predict": _time(
            lambda: service.predict_records(service.validate(records)), args.repeats
        ),
        "row-wise encode_records + predict": _time(
            lambda: service.bundle.predict_encoded(service.bundle.encoder.encode_records(valid)), args.repeats
        ),
    }
    base = statistics.median(runs["bare booster.inplace_predict(encoded)"])
    print(
        f"model {service.run_id}: {booster.num_boosted_rounds()} trees, {encoded.shape[1]} encoded features; "
        f"{args.rows} records, median of {args.repeats} runs, nthread=1"
    )
    print(f"{'path':<42} {'median ms':>10} {'p99 ms':>8} {'rows/s':>12} {'ratio':>7}")
    for name, times in runs.items():
        median = statistics.median(times)
        p99 = sorted(times)[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"{name:<42} {median * 1e3:>10.2f} {p99 * 1e3:>8.2f} {args.rows / median:>12,.0f} {base / median:>7.2f}")


if __name__ == "__main__":
    main()
