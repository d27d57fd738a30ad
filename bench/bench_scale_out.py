"""Scale-out in one run: batch files/s with 1 and 2 embedded workers and on a Spark standalone cluster, hyperopt
tuning wall time with parallelism 1 and 2, and (unless --no-kinesis) the Kinesis group with 1, 2, 3 consumers.

    .venv/bin/python -m bench.bench_scale_out                       # 12,000 files, 16 trials, 2 rounds, Kinesis
    .venv/bin/python -m bench.bench_scale_out --files 20000 --rounds 3 --sections batch,tuning

Batch: the same generated account files (200 rows, CSV as Kaggle writes it) scored by `run_batch` into a fresh
folder; every measurement runs in a process of its own, so each 2-worker run pays its helpers' cold start as a
`python -m batch score` does (the time is run_batch's, not the interpreter's start). Rounds alternate 1 and 2
workers. The Spark figure is the same files on a master and two 1-core workers started by
`python -m batch.spark_cluster` (what `make spark-cluster` runs), session start reported apart.

Tuning: `training.search` on --tuning-rows generated rows (10,000), the same seed and trials: parallelism 1 in one
process (as the flow runs by default), parallelism 2 as SparkTrials on the same cluster (session start apart).
TRAIN_THREADS is 1 on both sides, so the cores are spent alike.

Then the cores 3 million files need in 30 minutes, from the measured per-core rate and the 2-worker scaling.
Figures only; nothing here is asserted. Everything shares this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlops.settings import PROJECT_ROOT
from native.throwaway import start_spark_cluster

TARGET_FILES, TARGET_SECONDS = 3_000_000, 30 * 60


def _child(*args: str) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_scale_out", *args], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_batch(inputs: str, output: str, workers: int, master: str | None) -> dict[str, Any]:
    from batch.runner import run_batch
    from batch.testing import tiny_bundle

    bundle = tiny_bundle()
    spark, session_s = None, 0.0
    if master:
        from batch.spark_engine import session_for

        began = time.perf_counter()
        spark = session_for(master)
        session_s = time.perf_counter() - began
    began = time.perf_counter()
    summary = run_batch(inputs, output, bundle, workers=workers, engine="spark" if master else "embedded", spark=spark)
    seconds = time.perf_counter() - began
    if spark is not None:
        spark.stop()
    return {"files": summary.scored, "seconds": seconds, "session_s": session_s}


def one_tuning(trials: int, rows: int, parallelism: int, master: str | None) -> dict[str, Any]:
    from mlops import training
    from mlops.data import clean, generate_bank_churners
    from mlops.spec import FeatureSpec

    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    data = training.split_data(clean(generate_bank_churners(rows, seed=3), spec), spec, seed=5)
    spark, session_s = None, 0.0
    if master:
        from batch.spark_engine import session_for

        began = time.perf_counter()
        spark = session_for(master, "churn-tuning")
        session_s = time.perf_counter() - began
    began = time.perf_counter()
    found = training.search(data, trials, seed=9, nthread=1, parallelism=parallelism, spark=spark)
    seconds = time.perf_counter() - began
    if spark is not None:
        spark.stop()
    return {"seconds": seconds, "session_s": session_s, "auc": found.valid_auc, "peak": found.peak_parallel}


def _halves(folder: Path) -> list[str]:
    """The input split in two folders (hard links): the peer of the 2-worker run, two independent 1-worker runs."""
    names = sorted((folder / "in").iterdir())
    halves = [folder / "half-0", folder / "half-1"]
    for index, half in enumerate(halves):
        half.mkdir(exist_ok=True)
        for path in names[index::2]:
            if not (half / path.name).exists():
                os.link(path, half / path.name)
    return [str(half) for half in halves]


def _ceiling(folder: Path) -> float:
    """Both halves scored at once by two separate 1-worker processes into one output folder: what 2 cores give
    with no coordination and no helper start at all (each process's own interpreter start is outside the timing).
    The slower one's time. (Into two folders it is ~1 s faster on 12,000 files: creating files in one directory
    is serialized by the file system; S3 has no such lock.)"""
    output = folder / "out-halves"  # one output folder, as the 2-worker run writes (its directory is shared)
    shutil.rmtree(output, ignore_errors=True)
    commands = []
    for half in _halves(folder):
        args = ["--one-batch", half, str(output), "1", ""]
        commands.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.bench_scale_out", *args],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    runs = [json.loads(command.communicate()[0].strip().splitlines()[-1]) for command in commands]
    return max(run["seconds"] for run in runs)


def batch_section(folder: Path, rounds: int, master: str) -> dict[str, float]:
    inputs = str(folder / "in")
    times: dict[str, list[float]] = {"1 worker": [], "2 workers": [], "spark cluster": [], "ceiling": []}
    files = 0
    for _ in range(rounds):
        times["ceiling"].append(_ceiling(folder))
        print(f"  batch 2 x 1 worker on halves  {times['ceiling'][-1]:6.2f}s (the machine's ceiling for 2 cores)")
        for label, workers, spark in (("1 worker", 1, ""), ("2 workers", 2, ""), ("spark cluster", 2, master)):
            output = folder / "out"
            shutil.rmtree(output, ignore_errors=True)
            run = _child("--one-batch", inputs, str(output), str(workers), spark)
            files = run["files"]
            times[label].append(run["seconds"])
            extra = f" (+{run['session_s']:.1f}s session start)" if spark else ""
            print(f"  batch {label:<14} {files / run['seconds']:>8,.0f} files/s  {run['seconds']:6.2f}s{extra}")
    rates = {label: files / statistics.median(seconds) for label, seconds in times.items()}
    rates["2 x 1 worker on halves"] = rates.pop("ceiling")
    one, two = rates["1 worker"], rates["2 workers"]
    print(f"batch, {files:,} files, median of {rounds}:")
    for label, rate in rates.items():
        print(f"  {label:<24} {rate:>8,.0f} files/s  ({rate / one:.2f}x of 1 worker)")
    per_core = one
    scaling = two / one / 2  # efficiency of the second core
    needed_linear = TARGET_FILES / TARGET_SECONDS / per_core
    print(
        f"3M files in 30 min need {TARGET_FILES / TARGET_SECONDS:,.0f} files/s: {needed_linear:.2f} cores at the "
        f"1-worker rate ({per_core:,.0f} files/s/core), {needed_linear / scaling:.2f} at the measured 2-worker "
        f"efficiency ({scaling:.0%})"
    )
    return rates


def tuning_section(trials: int, rows: int, rounds: int, master: str) -> None:
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for parallelism in (1, 2):
            spark = master if parallelism > 1 else ""
            run = _child("--one-tuning", str(trials), str(rows), str(parallelism), spark)
            times[parallelism].append(run["seconds"])
            extra = f" (+{run['session_s']:.1f}s session start)" if parallelism > 1 else ""
            print(
                f"  tuning parallelism {parallelism}: {run['seconds']:6.1f}s, best AUC {run['auc']:.4f}, "
                f"peak {run['peak']} at once{extra}"
            )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(
        f"tuning, {trials} trials on {rows:,} rows, median of {rounds}: parallelism 1 {one:.1f}s, 2 {two:.1f}s "
        f"({one / two:.2f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12_000)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--tuning-rows", type=int, default=10_000, help="generated rows the tuning splits")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--sections", default="batch,tuning,kinesis", help="which of batch, tuning, kinesis to run (comma-separated)"
    )
    parser.add_argument("--one-batch", nargs=4, help=argparse.SUPPRESS)  # a child: inputs output workers master
    parser.add_argument("--one-tuning", nargs=4, help=argparse.SUPPRESS)  # a child: trials rows parallelism master
    args = parser.parse_args(argv)
    if args.one_batch:
        inputs, output, workers, master = args.one_batch
        print(json.dumps(one_batch(inputs, output, int(workers), master or None)))
        return
    if args.one_tuning:
        trials, rows, parallelism, master = args.one_tuning
        print(json.dumps(one_tuning(int(trials), int(rows), int(parallelism), master or None)))
        return

    from batch.testing import write_account_files

    sections = set(args.sections.split(","))

    folder = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    cluster = None
    try:
        if "batch" in sections or "tuning" in sections:
            cluster = start_spark_cluster(folder / "spark", workers=2)
            print(f"Spark cluster {cluster.master_url}: a master and 2 workers of 1 core", flush=True)
        if "batch" in sections:
            print(f"writing {args.files:,} account files of 200 rows ...", flush=True)
            write_account_files(folder / "in", args.files, 200)
            batch_section(folder, args.rounds, cluster.master_url)
        if "tuning" in sections:
            tuning_section(args.trials, args.tuning_rows, args.rounds, cluster.master_url)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if "kinesis" in sections:
        from bench import bench_kinesis_group

        print("Kinesis consumer group (bench_kinesis_group, 40,000 records, 4 shards):", flush=True)
        bench_kinesis_group.main(["--rounds", str(args.rounds)])


if __name__ == "__main__":
    main()
