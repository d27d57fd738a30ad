"""Drift cost: 10k current rows x all 19 features against a 10k reference, with Evidently 0.7 (the service's
compute_drift), timed as the median of a few runs; side by side with a 2k-row current window (the service's
default DRIFT_WINDOW_SIZE) and a 2k sample of the 10k rows, and with the reference prepared once vs every time.

    .venv/bin/python bench/bench_drift.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd

from mlops.data import clean, generate_bank_churners
from mlops.spec import FeatureSpec
from monitoring.evidently_service.drift import compute_drift, prepare_reference
from simulation_business.sampling import drift_frame


def timed_round_robin(cases: list[tuple[str, Callable[[], object]]], runs: int) -> dict[str, list[float]]:
    """Cases interleaved run by run, so a noisy neighbour (shared CPU) hurts them all alike."""
    for _, fn in cases:
        fn()  # warm-up (imports, scipy caches)
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, fn in cases:
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    spec = FeatureSpec.load("features.yaml")
    data = clean(generate_bank_churners(2 * args.rows, seed=1), spec)
    reference_frame = data.iloc[: args.rows].reset_index(drop=True)
    current: pd.DataFrame = drift_frame(data.iloc[args.rows :].reset_index(drop=True), spec, strength=0.5)
    reference = prepare_reference(reference_frame, spec)
    window = current.iloc[:2000]
    sample = current.sample(n=2000, random_state=0)

    cases: list[tuple[str, Callable[[], object]]] = [
        (f"{args.rows} current x {len(spec.feature_columns)} features, reference prepared once",
         lambda: compute_drift(current, reference, spec)),
        (f"{args.rows} current, reference prepared every time",
         lambda: compute_drift(current, prepare_reference(reference_frame, spec), spec)),
        ("2000-row window (DRIFT_WINDOW_SIZE default)", lambda: compute_drift(window, reference, spec)),
        (f"2000-row random sample of the {args.rows}", lambda: compute_drift(sample, reference, spec)),
    ]  # fmt: skip
    print(f"reference {len(reference_frame)} rows; {args.runs} runs each (median, max)")
    baseline = None
    for name, times in timed_round_robin(cases, args.runs).items():
        median, worst = statistics.median(times), max(times)
        baseline = baseline or median
        print(f"  {name:<62} median {median:6.3f}s  max {worst:6.3f}s  x{median / baseline:4.2f}")
    full = compute_drift(current, reference, spec)
    small = compute_drift(sample, reference, spec)
    print(f"drift share: full {full.share:.3f}, 2k sample {small.share:.3f} (drifted: {full.drifted_count} vs "
          f"{small.drifted_count} of {len(full.columns)})")  # fmt: skip


if __name__ == "__main__":
    main()
