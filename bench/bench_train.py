"""Training overhead: our Prefect flow (every trial logged to MLflow, the best refit, logged and registered) against a
bare hyperopt loop with the same search space, data, seed and threads and no MLflow or Prefect, in one run.

    .venv/bin/python -m bench.bench_train                  # 50 trials on 10,000 rows
    .venv/bin/python -m bench.bench_train --trials 10 --rows 5000

It starts its own throwaway moto, MLflow (SQLite backend, as `make up`) and Prefect servers on free ports and puts
generated rows into the feature store, so it needs nothing running. The bare loop reads the same rows back from the
feature store, splits them with the flow's own function and fits with `training.fit_trial` and `training.refit`
(what the flow runs between its logging). Order alternates between rounds (`--rounds`) so neither side always runs
on a warm cache.

Each side runs in a process of its own, with the same environment. The servers run as `make up` runs them (without
MLflow's job runner, which took 1.45 of the 2 cores while idle: see native/runtime.py MLFLOW_SERVER_ENV); with it,
the flow's fits ran 3-4x slower than the bare loop's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from native.throwaway import start_registry_servers  # noqa: E402

GOAL = 1.3


def bare_loop(settings: Any, spec: Any, trials: int) -> dict[str, float]:
    """The same work without MLflow or Prefect: read, split, the same TPE search (`training.search`, no trial
    hook), refit the best, score the test set."""
    from mlops import training

    started = time.perf_counter()
    frame = _read_features(settings, spec)
    data = training.split_data(frame, spec, settings.seed)
    prepared = time.perf_counter()
    found = training.search(data, trials, settings.seed, settings.train_threads)
    tuned = time.perf_counter()
    booster = training.refit(data, found.params, found.rounds, settings.seed, settings.train_threads)
    training.score(data.y_test, booster.inplace_predict(data.x_test))
    done = time.perf_counter()
    return {"total": done - started, "tuning": tuned - prepared, "valid_auc": found.valid_auc}


def _read_features(settings: Any, spec: Any) -> Any:
    """What the flow's first task reads: the newest snapshot's training rows."""
    from mlops import aws
    from mlops.feature_store import FeatureStore

    store = FeatureStore(aws.client("s3", settings), settings)
    return store.get_frame(store.resolve(spec.name, None), "train.parquet")


def our_flow(settings: Any, trials: int) -> dict[str, float]:
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings
    from model_orchestration.train_flow import model_tuning_and_uploading

    overrides = settings.flow_overrides(run_id=None)
    started = time.perf_counter()
    with temporary_settings(client_settings(settings)):
        result = model_tuning_and_uploading(max_evals=trials, env="local", settings_overrides=overrides)
    total = time.perf_counter() - started
    tuning = _tuning_seconds(settings, result["run_id"])
    return {"total": total, "tuning": tuning, "valid_auc": float("nan"), "run_id": result["run_id"]}


def _tuning_seconds(settings: Any, parent_run_id: str) -> float:
    """The flow's own figure: the trials' time plus the wait for their logging (metrics of the tuning run)."""
    from mlflow import MlflowClient

    metrics = MlflowClient(settings.mlflow_tracking_uri).get_run(parent_run_id).data.metrics
    return metrics.get("tuning_seconds", float("nan")) + metrics.get("trial_logging_wait_seconds", 0.0)


def _side(name: str, settings: Any, trials: int) -> dict[str, float]:
    """One side in a process of its own (a fresh interpreter: neither side inherits the other's imports or caches)."""
    import json
    import os
    import subprocess

    env = dict(os.environ)
    env.update({k: v for k, v in settings.as_env().items() if v is not None})
    finished = subprocess.run(
        [sys.executable, "-m", "bench.bench_train", "--side", name, "--trials", str(trials)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith('{"total"')]
    if finished.returncode != 0 or not lines:
        raise SystemExit(f"the {name} side failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="flow and bare loop, alternating which goes first")
    parser.add_argument("--threads", type=int, default=None, help="XGBoost threads (default: TRAIN_THREADS)")
    parser.add_argument("--side", choices=["flow", "bare"], help=argparse.SUPPRESS)  # one side, in its own process
    args = parser.parse_args(argv)
    if args.side:
        import json

        from mlops.settings import load_settings
        from mlops.spec import FeatureSpec

        settings = load_settings("local")
        if args.side == "flow":
            figures = our_flow(settings, args.trials)
        else:
            figures = bare_loop(settings, FeatureSpec.load(settings.feature_spec), args.trials)
        print(json.dumps({k: v for k, v in figures.items() if k != "run_id"}))
        return

    from mlops.init_aws import create_resources, load_data
    from mlops.settings import load_settings
    from mlops.spec import FeatureSpec

    scratch = Path(tempfile.mkdtemp(prefix="bench-train-"))
    servers = start_registry_servers(scratch)
    try:
        base = load_settings("local")
        settings = load_settings(
            "local",
            aws_endpoint_url=servers.moto_url,
            mlflow_tracking_uri=servers.mlflow_url,
            prefect_api_url=servers.prefect_api_url,
            state_dir=scratch / "state",
            s3_bucket="bench-feature-store",
            drift_service_url=None,
            run_id=None,
            train_threads=args.threads or base.train_threads,
        )
        spec = FeatureSpec.load(settings.feature_spec)
        create_resources(settings)
        load_data(settings, spec, None, rows=args.rows, seed=7)
        print(
            f"{args.trials} trials on {args.rows} generated rows, {settings.train_threads} XGBoost thread(s), "
            f"seed {settings.seed}; MLflow {servers.mlflow_url} (SQLite), Prefect {servers.prefect_api_url}",
            flush=True,
        )
        flows: list[dict[str, float]] = []
        bares: list[dict[str, float]] = []
        for round_number in range(args.rounds):
            order = [("flow", flows), ("bare", bares)]
            if round_number % 2:
                order.reverse()
            for name, results in order:
                run = _side(name, settings, args.trials)
                results.append(run)
                print(f"  round {round_number + 1} {name}: {run['total']:.1f} s (tuning {run['tuning']:.1f} s)")
        flow_total = statistics.median(r["total"] for r in flows)
        bare_total = statistics.median(r["total"] for r in bares)
        flow_tuning = statistics.median(r["tuning"] for r in flows)
        bare_tuning = statistics.median(r["tuning"] for r in bares)
        print(f"\n{'':<34} {'total s':>8} {'50 trials s' if args.trials == 50 else 'trials s':>11}")
        print(f"{'bare hyperopt loop':<34} {bare_total:>8.1f} {bare_tuning:>11.1f}")
        print(f"{'our flow (Prefect + MLflow)':<34} {flow_total:>8.1f} {flow_tuning:>11.1f}")
        ratio = flow_total / bare_total
        verdict = "meets" if ratio <= GOAL else "short of"
        print(
            f"ratio flow / bare: {ratio:.2f} whole run ({verdict} the goal <= {GOAL}); "
            f"{flow_tuning / bare_tuning:.2f} for the trials alone; "
            f"{(flow_tuning - bare_tuning) / args.trials * 1000:.0f} ms of logging per trial"
        )
        print(f"  command: .venv/bin/python -m bench.bench_train --trials {args.trials} --rows {args.rows}")
    finally:
        servers.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
