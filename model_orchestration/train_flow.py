"""Prefect flow `model_tuning_and_uploading`: features from S3 -> hyperopt over XGBoost -> MLflow -> registry.

One MLflow run per hyperopt trial (nested under a parent run for the tuning session); the best trial is refit on
train + validation, scored on the held-out test set and logged in the parent run with its spec and encoders, then
registered as a new version of the model with the alias `challenger`. The parent run's id is the RUN_ID to serve.

`python -m model_orchestration.train_flow` runs it once in the foreground with a progress bar (`make train`).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from mlops import aws, drivers, registry, training
from mlops.data import LABEL, DataError, quality_summary
from mlops.feature_store import FeatureStore, Snapshot
from mlops.model import MODEL_ARTIFACT, ModelBundle
from mlops.promoting import PromotionError, judge
from mlops.pyfunc import input_example, log_model
from mlops.settings import PROJECT_ROOT, ConfigurationError, Settings, load_flow_settings
from mlops.spec import FeatureSpec, SpecError
from model_orchestration.prefect_process import run_against_prefect
from model_orchestration.trial_logging import Trial, TrialLogger

FLOW_NAME = "model_tuning_and_uploading"


@dataclass
class TrainingOutcome:
    run_id: str
    model_name: str
    model_uri: str
    version: str
    test_metrics: dict[str, float]
    best_params: dict[str, Any]
    trials: int
    experiment_url: str


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


@task(name="load features", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def load_features(settings: Settings, spec: FeatureSpec, data_hash: str | None) -> tuple[pd.DataFrame, Snapshot]:
    store = FeatureStore(aws.client("s3", settings), settings)
    snapshot = store.resolve(spec.name, data_hash)
    frame = store.get_frame(snapshot, "train.parquet")
    get_run_logger().info("read %d rows from %s", len(frame), snapshot.uri("train.parquet"))
    return frame, snapshot


@task(name="split and encode", cache_policy=NONE)
def split(frame: pd.DataFrame, spec: FeatureSpec, seed: int) -> training.Split:
    missing = [c for c in [*spec.feature_columns, LABEL] if c not in frame.columns]
    if missing:
        raise DataError(f"stored features lack column(s) {missing} of spec '{spec.name}': re-run make init_aws")
    return training.split_data(frame, spec, seed)


def tuning_session(settings: Settings) -> Any:
    """The Spark session parallel trials run on (SPARK_MASTER; a dead master is reported by name at once)."""
    get_run_logger().info(
        "tuning %d trials at a time on Spark master %s", settings.tuning_parallelism, settings.spark_master
    )
    from batch.spark_engine import session_for

    try:
        return session_for(settings.spark_master, "churn-tuning")
    except ImportError as error:  # an image or venv without the spark extra
        raise ConfigurationError(
            f"TUNING_PARALLELISM={settings.tuning_parallelism} runs trials on Spark, but pyspark is not installed "
            f"({error}): install the project's `spark` extra, or set TUNING_PARALLELISM=1"
        ) from error


@task(name="tune with hyperopt", cache_policy=NONE)
def tune(
    data: training.Split, settings: Settings, max_evals: int, parent_run_id: str, show_progress: bool
) -> tuple[dict[str, Any], int, float]:
    """TPE search; every trial is logged as a child run of the tuning session."""
    logger = get_run_logger()
    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    client = MlflowClient(settings.mlflow_tracking_uri)
    trial_log = TrialLogger(client, experiment_id, parent_run_id)  # MLflow written beside the fits, not between

    def on_trial(trial: training.TrialReport) -> None:
        started, ended = int(trial.started * 1000), int(trial.ended * 1000)
        trial_log.submit(Trial(trial.number, trial.params, trial.metrics, started, ended))
        if not show_progress:
            logger.info("trial %d/%d valid AUC %.4f", trial.number, max_evals, trial.metrics["valid_auc"])

    parallelism = settings.tuning_parallelism
    spark = tuning_session(settings) if parallelism > 1 else None
    tuning_started = time.perf_counter()
    try:
        found = training.search(
            data, max_evals, settings.seed, settings.train_threads, on_trial, show_progress, parallelism, spark
        )
    except BaseException:
        with contextlib.suppress(Exception):  # the tuning's own error is the one to report
            trial_log.close(timeout=30)
        raise
    finally:
        if spark is not None:
            spark.stop()
    fitted = time.perf_counter()
    logged = trial_log.close()  # every trial in MLflow before the flow goes on (raises what logging met)
    mlflow.log_metrics(
        {"tuning_seconds": fitted - tuning_started, "trial_logging_wait_seconds": time.perf_counter() - fitted}
    )
    mlflow.set_tag("tuning_parallelism", str(parallelism))
    mlflow.log_metric("tuning_peak_parallel_trials", found.peak_parallel)
    logger.info(
        "%d trials logged to MLflow; %.1f s waited for the logging after the last fit",
        logged,
        time.perf_counter() - fitted,
    )
    logger.info("best validation AUC %.4f after %d trials", found.valid_auc, found.trials)
    return found.params, found.rounds, found.valid_auc


@task(name="refit, score and register", cache_policy=NONE)
def refit_and_register(
    data: training.Split, settings: Settings, params: dict[str, Any], rounds: int, run_id: str, data_hash: str
) -> tuple[str, str, dict[str, float]]:
    booster = training.refit(data, params, rounds, settings.seed, settings.train_threads)
    test_metrics = training.score(data.y_test, booster.inplace_predict(data.x_test))
    mlflow.log_params({f"best_{k}": v for k, v in params.items()} | {"best_rounds": rounds})
    mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
    importance = log_global_importance(ModelBundle(booster, data.spec), data.x_test)
    with tempfile.TemporaryDirectory() as workdir:
        info = log_model(booster, data.spec, Path(workdir), input_example(data.test_frame, data.spec))
    model_uri = f"runs:/{run_id}/{MODEL_ARTIFACT}"
    name = registry.model_name_for(settings, data.spec)
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = registry.register(client, info.model_uri or model_uri, name, run_id)
    # what a reviewer sees on the version's page in the MLflow UI
    client.update_model_version(
        name,
        version,
        description=(
            f"XGBoost tuned by hyperopt on spec '{data.spec.name}', data snapshot {data_hash}. Test set "
            f"({data.sizes['test']} rows): ROC AUC {test_metrics['roc_auc']:.4f}, PR AUC {test_metrics['pr_auc']:.4f}, "
            f"Brier {test_metrics['brier']:.4f}, F1 {test_metrics['f1']:.4f}. {drivers.describe_top(importance)} "
            f"Run {run_id}."
        ),
    )
    get_run_logger().info("test ROC AUC %.4f; registered %s version %s", test_metrics["roc_auc"], name, version)
    return model_uri, version, test_metrics


def log_global_importance(bundle: ModelBundle, held_out: np.ndarray) -> dict[str, float]:
    """Each feature's mean |contribution| on the held-out set, logged as a document and a bar chart of the run;
    the report compares live traffic with it (mlops/drivers.py)."""
    document = drivers.importance_document(bundle, held_out, "held-out test set")
    mlflow.log_dict(document, drivers.IMPORTANCE_ARTIFACT)
    title = f"Drivers of churn risk, held-out set ({document['rows']} rows)"
    mlflow.log_figure(drivers.importance_figure(document["importance"], title), drivers.IMPORTANCE_PLOT)
    get_run_logger().info("%s", drivers.describe_top(document["importance"]))
    return document["importance"]


@flow(name=FLOW_NAME, log_prints=True)
def model_tuning_and_uploading(
    max_evals: int | None = None,
    data_hash: str | None = None,
    spec_path: str | None = None,
    env: str | None = None,
    show_progress: bool = False,
    settings_overrides: dict[str, Any] | None = None,
    promote: bool = False,
) -> dict[str, Any]:
    """Tune, log every trial, refit the best, register it as `challenger`. Returns RUN_ID and test metrics.

    `promote`: then put the new challenger through the promotion gate (model_orchestration/promote_flow.py), as a
    retraining trigger asks with RETRAIN_AUTO_PROMOTE. `settings_overrides` (field name -> value) win over the
    environment: tests point the flow at their servers.
    """
    settings = load_flow_settings(env, settings_overrides)
    outcome = train(
        settings, max_evals=max_evals, data_hash=data_hash, spec_path=spec_path, show_progress=show_progress
    )
    result = dict(outcome.__dict__)
    if promote:
        try:
            decision = judge(settings)
            result["promotion"] = decision.action
            get_run_logger().info("promotion gate: %s -> %s", decision.summary(), decision.action)
        except PromotionError as error:
            result["promotion"] = f"not judged: {error}"
            get_run_logger().warning("promotion gate not run: %s", error)
    return result


def train(
    settings: Settings,
    max_evals: int | None = None,
    data_hash: str | None = None,
    spec_path: str | Path | None = None,
    show_progress: bool = False,
) -> TrainingOutcome:
    """The flow's body (runs inside a flow run): callable from the flow and from tests' flows alike."""
    spec = FeatureSpec.load(spec_path or settings.feature_spec)
    max_evals = max_evals or settings.max_evals
    registry.check_mlflow(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(registry.experiment_for(settings, spec))

    frame, snapshot = load_features(settings, spec, data_hash)
    data = split(frame, spec, settings.seed)
    with mlflow.start_run(run_name=f"{FLOW_NAME}-{spec.name}") as run:
        mlflow.set_tags(
            {
                "kind": "tuning",
                "data_hash": snapshot.data_hash,
                "data_uri": snapshot.uri("train.parquet"),
                "reference_uri": snapshot.uri("reference.parquet"),
                "git_commit": git_commit(),
                "spec_name": spec.name,
                "max_evals": str(max_evals),
                "split_seed": str(settings.seed),  # the promotion gate rebuilds the held-out test set from it
            }
        )
        mlflow.log_params({f"rows_{k}": v for k, v in data.sizes.items()} | {"max_evals": max_evals})
        quality = quality_summary(frame, spec)
        mlflow.log_dict(quality, "data_quality.json")
        mlflow.log_metrics(
            {"data_rows": float(quality["rows"]), "data_duplicated_rows": float(quality["duplicated_rows"])}
            | ({"data_positive_share": float(quality["positive_share"])} if "positive_share" in quality else {})
        )
        params, rounds, valid_auc = tune(data, settings, max_evals, run.info.run_id, show_progress)
        mlflow.log_metric("best_valid_auc", valid_auc)
        model_uri, version, test_metrics = refit_and_register(
            data, settings, params, rounds, run.info.run_id, snapshot.data_hash
        )
    url = f"{settings.mlflow_tracking_uri.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    return TrainingOutcome(
        run_id=run.info.run_id,
        model_name=registry.model_name_for(settings, spec),
        model_uri=model_uri,
        version=version,
        test_metrics=test_metrics,
        best_params=params,
        trials=max_evals,
        experiment_url=url,
    )


def already_trained(settings: Settings, spec_path: str | None, data_hash: str | None) -> str | None:
    """The run id of the served-by-default model if it was trained on the same feature snapshot, else None."""
    spec = FeatureSpec.load(spec_path or settings.feature_spec)
    wanted = FeatureStore(aws.client("s3", settings), settings).resolve(spec.name, data_hash).data_hash
    try:
        run_id, _ = registry.resolve_run_id(
            settings.model_copy(update={"run_id": None, "model_name": registry.model_name_for(settings, spec)})
        )
    except LookupError:
        return None
    tags = MlflowClient(settings.mlflow_tracking_uri).get_run(run_id).data.tags
    if tags.get("data_hash") != wanted:
        return None
    try:
        registry.download_model(settings, run_id)  # its artifacts must still be there, not just its record
    except (FileNotFoundError, OSError):
        return None
    return run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_orchestration.train_flow",
        description=f"Run the Prefect flow {FLOW_NAME} once, in the foreground, with a progress bar.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--max-evals", type=int, default=None, help="hyperopt trials (default: MAX_EVALS, 50)")
    parser.add_argument("--data-hash", default=None, help="feature store snapshot (default: the latest)")
    parser.add_argument("--spec", default=None, help="feature spec file (default: FEATURE_SPEC)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="skip training when the registered model was already trained on the latest data (make up)",
    )
    args = parser.parse_args(argv)
    if args.max_evals is not None and args.max_evals < 1:
        parser.error("--max-evals must be at least 1")

    def work(settings: Settings) -> int:
        registry.check_mlflow(settings.mlflow_tracking_uri)
        if settings.tuning_parallelism > 1 and settings.spark_master.startswith("spark://"):
            from batch.spark_engine import check_master

            check_master(settings.spark_master)  # before the data is read, not after
        if args.if_missing:
            existing = already_trained(settings, args.spec, args.data_hash)
            if existing:
                name = registry.model_name_for(settings, FeatureSpec.load(args.spec or settings.feature_spec))
                print(f"{name} is already trained on the latest data; not training again")
                print(f"RUN_ID={existing}")
                return 0
        result = model_tuning_and_uploading(
            max_evals=args.max_evals,
            data_hash=args.data_hash,
            spec_path=args.spec,
            env=settings.env,
            show_progress=True,
        )
        metrics = result["test_metrics"]
        print(
            f"\ntest ROC AUC {metrics['roc_auc']:.4f}  PR AUC {metrics['pr_auc']:.4f}  F1 {metrics['f1']:.4f}  "
            f"Brier {metrics['brier']:.4f}  ({result['trials']} trials)"
        )
        print(f"registered {result['model_name']} version {result['version']} as 'challenger'")
        print(f"MLflow: {result['experiment_url']}")
        print(f"RUN_ID={result['run_id']}")
        return 0

    return run_against_prefect("train", args.env, work, (SpecError, DataError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
