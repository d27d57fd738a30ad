"""The training pipeline on real servers: S3 feature store (moto), Prefect flow, MLflow tracking and registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect.settings import temporary_settings

from mlops import aws, registry
from mlops.data import generate_bank_churners, read_raw
from mlops.feature_store import FeatureStore
from mlops.init_aws import load_data
from mlops.model import ModelBundle
from mlops.model_service import ModelService
from mlops.prefect_api import client_settings
from mlops.registry import download_model
from mlops.settings import PROJECT_ROOT, Settings
from mlops.spec import FeatureSpec
from native.throwaway import free_port
from tests.support.processes import TEST_ROWS, TEST_TRIALS
from tests.support.telco import SPEC_PATH, telco_frame

pytestmark = pytest.mark.integration


def test_init_aws_stores_clean_features_under_a_content_hash(settings: Settings, feature_snapshot: Any) -> None:
    store = FeatureStore(aws.client("s3", settings), settings)
    assert store.latest("bank_churners") == feature_snapshot
    train = store.get_frame(feature_snapshot, "train.parquet")
    reference = store.get_frame(feature_snapshot, "reference.parquet")
    assert len(train) == TEST_ROWS and 0 < len(reference) <= TEST_ROWS
    assert feature_snapshot.data_hash in feature_snapshot.uri()
    streams = aws.client("kinesis", settings).list_streams()["StreamNames"]
    assert {"predictions", "results", "predictions-dead-letter"} <= set(streams)


def test_flow_logs_every_trial_and_registers_the_best(settings: Settings, trained_run_id: str) -> None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    parent = client.get_run(trained_run_id)
    assert parent.data.tags["data_hash"] and parent.data.tags["data_uri"].startswith("s3://test-feature-store/")
    assert parent.data.tags["git_commit"]
    for metric in ("test_roc_auc", "test_pr_auc", "test_f1", "test_precision", "test_recall", "test_brier"):
        assert metric in parent.data.metrics
    assert parent.data.metrics["test_roc_auc"] > 0.8  # the generated data carries a real signal
    trials = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{trained_run_id}'"
    )
    assert len(trials) >= TEST_TRIALS
    for trial in trials:
        assert {"valid_auc", "valid_logloss", "fit_seconds"} <= set(trial.data.metrics)
        assert "max_depth" in trial.data.params
    version = client.get_model_version_by_alias(registry.model_name_for(settings), "challenger")
    assert version.run_id == trained_run_id
    # what a reviewer sees: the version's description, the data-quality summary, the model's input example
    assert "ROC AUC" in version.description and parent.data.tags["data_hash"] in version.description
    quality = json.loads(Path(client.download_artifacts(trained_run_id, "data_quality.json")).read_text())
    assert quality["rows"] == TEST_ROWS and set(quality["missing_share"]) == set(
        FeatureSpec.load(PROJECT_ROOT / "features.yaml").feature_columns
    )
    example = json.loads((download_model(settings, trained_run_id) / "input_example.json").read_text())
    assert "customer_age" in json.dumps(example)


def test_the_run_logs_its_drivers_of_risk_and_the_version_names_the_top_five(
    settings: Settings, trained_run_id: str, feature_snapshot: Any
) -> None:
    from mlops import training
    from mlops.drivers import IMPORTANCE_ARTIFACT, IMPORTANCE_PLOT, logged_importance, top_drivers
    from mlops.explain import mean_abs_contributions

    client = MlflowClient(settings.mlflow_tracking_uri)
    assert {IMPORTANCE_ARTIFACT, IMPORTANCE_PLOT} <= {
        a.path for a in client.list_artifacts(trained_run_id, "explanations")
    }
    plot = Path(client.download_artifacts(trained_run_id, IMPORTANCE_PLOT))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5_000
    importance = logged_importance(settings.mlflow_tracking_uri, trained_run_id)
    assert importance is not None
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    assert set(importance) == set(spec.feature_columns) and max(importance.values()) > 0
    # the figures are the held-out set's, recomputed here from the snapshot and seed the run names
    tags = client.get_run(trained_run_id).data.tags
    store = FeatureStore(aws.client("s3", settings), settings)
    frame = store.get_frame(store.resolve(spec.name, tags["data_hash"]), "train.parquet")
    held_out = training.split_data(frame, spec, int(tags["split_seed"])).x_test
    bundle = ModelBundle.from_model_dir(download_model(settings, trained_run_id))
    again = mean_abs_contributions(bundle, held_out)
    assert list(again) == list(importance)
    np.testing.assert_allclose(list(again.values()), list(importance.values()), rtol=1e-9)
    # its version in the model the flow registered (the promotion tests register the same run in a model of theirs)
    name = registry.model_name_for(settings, spec)
    (version,) = client.search_model_versions(f"name = '{name}' and run_id = '{trained_run_id}'")
    listed = version.description.split("Top drivers", 1)[1]
    positions = [listed.index(f" {feature} ") for feature in top_drivers(importance)]
    assert positions == sorted(positions), listed  # the five named, largest first


def test_pyfunc_takes_raw_kaggle_rows_and_matches_the_fast_path(settings: Settings, trained_run_id: str) -> None:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{trained_run_id}/model")
    raw = generate_bank_churners(300, seed=11)
    probabilities = np.asarray(pyfunc.predict(raw.drop(columns=["Attrition_Flag"])), dtype=float)
    assert probabilities.shape == (300,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    bundle = ModelBundle.from_model_dir(download_model(settings, trained_run_id))
    np.testing.assert_allclose(bundle.predict_raw(raw), probabilities, atol=1e-6)
    real = read_raw(PROJECT_ROOT / "tests" / "data" / "bank_churners_kaggle_head.csv")  # verbatim Kaggle rows
    on_real = np.asarray(pyfunc.predict(real), dtype=float)  # every column, leaks and target included: ignored
    assert on_real.shape == (len(real),) and ((on_real >= 0) & (on_real <= 1)).all()
    np.testing.assert_allclose(bundle.predict_raw(real), on_real, atol=1e-6)


def test_a_second_spec_trains_and_serves_with_no_code_change(
    settings: Settings, servers: Any, tmp_path: Path, trained_run_id: str
) -> None:
    from model_orchestration.train_flow import model_tuning_and_uploading

    spec = FeatureSpec.load(SPEC_PATH)
    raw = tmp_path / "telco.csv"
    telco_frame().to_csv(raw, index=False)
    load_data(settings, spec, raw, rows=0, seed=1)
    overrides = settings.flow_overrides(train_threads=1)
    client = MlflowClient(settings.mlflow_tracking_uri)
    churn_before = client.get_model_version_by_alias("churn-model", "challenger")
    with temporary_settings(client_settings(settings)):
        result = model_tuning_and_uploading(max_evals=2, spec_path=str(SPEC_PATH), settings_overrides=overrides)
    assert result["test_metrics"]["roc_auc"] > 0.7
    # one registered model per data set: the telco spec's own, and churn-model's alias has not moved
    assert result["model_name"] == "telco-churn-model"
    assert client.get_model_version_by_alias("telco-churn-model", "challenger").run_id == result["run_id"]
    churn_after = client.get_model_version_by_alias("churn-model", "challenger")
    assert (churn_after.version, churn_after.run_id) == (churn_before.version, churn_before.run_id)
    service = ModelService.from_settings(settings.model_copy(update={"feature_spec": SPEC_PATH}))
    assert service.run_id == result["run_id"] != trained_run_id
    assert service.spec.categorical["contract"] == ["monthly", "one-year", "two-year"]  # learned, logged
    records = service.validate(
        [
            {
                "tenure_months": 2,
                "monthly_charges": 110.0,
                "support_calls": 6,
                "contract": "monthly",
                "payment_method": "Card",
                "plan_tier": "basic",
            },
            {
                "tenure_months": 70,
                "monthly_charges": 25.0,
                "support_calls": 0,
                "contract": "two-year",
                "payment_method": None,
                "plan_tier": "?",
            },
        ]
    )
    risky, loyal = service.predict_records(records)
    assert risky > loyal


def run_cli(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_aws_with_a_bad_csv_gives_one_clear_message(service_env: dict[str, str], tmp_path: Path) -> None:
    raw = generate_bank_churners(50, seed=3).drop(columns=["Credit_Limit"])
    path = tmp_path / "lacking.csv"
    raw.to_csv(path, index=False)
    result = run_cli("mlops.init_aws", "--data", str(path), "--skip-resources", env=service_env)
    assert result.returncode == 2
    assert "missing column(s) ['credit_limit']" in result.stderr
    assert "Traceback" not in result.stderr


def test_dead_endpoints_are_named(service_env: dict[str, str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    s3_down = run_cli("mlops.init_aws", env={**service_env, "AWS_ENDPOINT_URL": dead})
    assert s3_down.returncode == 2 and "AWS_ENDPOINT_URL" in s3_down.stderr and "Traceback" not in s3_down.stderr
    mlflow_down = run_cli(
        "model_orchestration.train_flow", "--max-evals", "1", env={**service_env, "MLFLOW_TRACKING_URI": dead}
    )
    assert mlflow_down.returncode == 2
    assert f"MLflow is unreachable at MLFLOW_TRACKING_URI={dead}" in mlflow_down.stderr
    prefect_down = run_cli("model_orchestration.train_flow", env={**service_env, "PREFECT_API_URL": dead + "/api"})
    assert prefect_down.returncode == 2 and "PREFECT_API_URL" in prefect_down.stderr


def test_training_cli_prints_the_run_id(service_env: dict[str, str], settings: Settings, feature_snapshot: Any) -> None:
    # its own model name, so the session's `challenger` (other tests serve it) stays the fixture's model
    result = run_cli(
        "model_orchestration.train_flow", "--max-evals", "2", env={**service_env, "MODEL_NAME": "cli-model"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = result.stdout.strip().splitlines()[-1].removeprefix("RUN_ID=")
    assert len(run_id) == 32
    assert "test ROC AUC" in result.stdout and settings.mlflow_tracking_uri in result.stdout
    assert MlflowClient(settings.mlflow_tracking_uri).get_run(run_id).data.tags["kind"] == "tuning"
