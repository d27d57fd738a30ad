"""Batch scoring throughput: the embedded engine (and Spark) on many small account files vs the bare booster.

    .venv/bin/python bench/bench_batch_files.py [--files 10000] [--rows 200] [--spark-files 2000] [--no-spark]

Generates the files (mlops.data.generate_bank_churners, CSV as Kaggle writes it) into a temporary folder, then
prints rows/s and files/s of:
- baseline: the booster's `inplace_predict` (nthread=1) on all rows already encoded in memory: the ceiling;
- embedded, all cores: `run_batch` end to end (list, read, clean, encode, predict, write Parquet, manifest);
- embedded, 1 worker on a subset: the per-core figure;
- spark local[cores] on a subset (JVM start-up excluded, session reused), scaled to the full input;
and the cores each would need for 3 million such files in 30 minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from batch.engine import default_workers
from batch.runner import run_batch
from batch.testing import tiny_bundle, write_account_files
from mlops.data import clean

TARGET_FILES = 3_000_000
TARGET_SECONDS = 30 * 60


def baseline(bundle, folder: Path, n_files: int) -> float:  # type: ignore[no-untyped-def]
    """rows/s of inplace_predict alone on every row, encoded in memory beforehand (median of 5)."""
    raw = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("*.csv"))[:n_files]], ignore_index=True)
    matrix = bundle.encoder.encode_frame(clean(raw, bundle.spec, require_target=False))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        bundle.predict_encoded(matrix)
        times.append(time.perf_counter() - started)
    return len(matrix) / statistics.median(times)


def show(label: str, rows: int, files: int, seconds: float, cores: int) -> float:
    files_per_core = files / seconds / cores
    needed = TARGET_FILES / TARGET_SECONDS / files_per_core
    print(
        f"{label:<38} {rows / seconds:>12,.0f} rows/s {files / seconds:>9,.1f} files/s  on {cores} core(s)"
        f"  -> {files_per_core:,.1f} files/s/core -> {needed:,.2f} cores for 3M files in 30 min"
    )
    return files_per_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--subset", type=int, default=2_000, help="files for the 1-worker and Spark runs")
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args()
    cores = default_workers()
    bundle = tiny_bundle(rows=5000, rounds=100)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        write_account_files(root / "in", args.files, args.rows)
        subset = root / "subset"
        subset.mkdir()
        for path in sorted((root / "in").glob("*.csv"))[: args.subset]:
            os.link(path, subset / path.name)
        print(
            f"generated {args.files} files x {args.rows} rows in {time.perf_counter() - started:.0f}s; "
            f"{cores} cores; target {TARGET_FILES:,} files / {TARGET_SECONDS}s = "
            f"{TARGET_FILES / TARGET_SECONDS:,.0f} files/s\n"
        )

        rows_per_s = baseline(bundle, root / "in", args.files)
        n_rows = args.files * args.rows
        show("baseline inplace_predict (in memory)", n_rows, args.files, n_rows / rows_per_s, 1)

        summary = run_batch(str(root / "in"), str(root / "out-embedded"), bundle, workers=cores)
        assert summary.scored == args.files and not summary.rejects, summary.line()
        show(f"embedded, {cores} workers, {args.files} files", summary.rows, summary.scored, summary.seconds, cores)

        one = run_batch(str(subset), str(root / "out-one"), bundle, workers=1)
        show(f"embedded, 1 worker, {args.subset} files", one.rows, one.scored, one.seconds, 1)

        rerun = run_batch(str(root / "in"), str(root / "out-embedded"), bundle, workers=cores)
        print(f"{'re-run (all skipped)':<38} {rerun.skipped} files skipped in {rerun.seconds:.2f}s")

        if not args.no_spark:
            from batch.spark_engine import local_session

            spark = local_session(f"local[{cores}]")
            try:
                warm = run_batch(str(subset), str(root / "out-spark-warm"), bundle, engine="spark", spark=spark)
                assert warm.scored == args.subset, warm.line()
                timed = run_batch(str(subset), str(root / "out-spark"), bundle, engine="spark", spark=spark)
                show(f"spark local[{cores}], {args.subset} files", timed.rows, timed.scored, timed.seconds, cores)
                print(f"{'':<38} scaled to {args.files} files: ~{timed.seconds * args.files / args.subset:.0f}s")
            finally:
                spark.stop()
        probabilities = np.concatenate([bundle.predict_raw(pd.read_csv(p)) for p in sorted(subset.glob("*"))[:3]])
        print(f"\nsanity: mean churn probability of 3 files {probabilities.mean():.3f}")


if __name__ == "__main__":
    main()
