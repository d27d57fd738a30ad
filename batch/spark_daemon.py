"""PySpark's worker daemon with the scoring and training stack already imported (`spark.python.daemon.module`).

Why: an executor's Python worker is forked from this daemon for a task, and a worker that ran a `mapPartitions`
generator (each hyperopt SparkTrials trial, each batch block) is not kept for the next task, so every task paid
the imports again: xgboost and scikit-learn alone ~1 s, ~3 s a trial in all, where a trial's fit on 10,000 rows
takes 0.3 s. Imported once here, before the forks, a worker starts with them (measured: bench/bench_scale_out.py).
The daemon stays single-threaded (importing starts no threads), so forking from it stays safe.
"""

from __future__ import annotations


def main() -> None:
    from pyspark import daemon

    import batch.engine  # noqa: F401  the batch blocks' stack: pandas, pyarrow, xgboost, the spec
    import mlops.training  # noqa: F401  a trial's: scikit-learn's metrics, hyperopt

    daemon.manager()


if __name__ == "__main__":
    main()
