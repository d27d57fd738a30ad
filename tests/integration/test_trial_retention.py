"""MLflow trial runs past TRIAL_RETENTION_DAYS are deleted and purged on the session's real MLflow server; the
parent run, a registered version's run and young trials stay (mlops.trial_retention)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops.settings import Settings
from mlops.trial_retention import main, prune_trial_runs

DAY_MS = 86_400_000


def test_old_trials_are_deleted_and_purged_and_the_rest_stays(
    settings: Settings, capsys: pytest.CaptureFixture
) -> None:
    run_settings = settings.model_copy(
        update={"mlflow_experiment": "trial-retention-test", "model_name": "trial-retention-model"}
    )
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.create_experiment("trial-retention-test")
    now_ms = int(time.time() * 1000)
    parent = client.create_run(experiment, start_time=now_ms - 60 * DAY_MS, tags={"kind": "tuning"}).info.run_id

    def trial(age_days: int, number: int) -> str:
        tags = {"mlflow.parentRunId": parent, "trial": str(number), "kind": "trial"}
        run = client.create_run(experiment, start_time=now_ms - age_days * DAY_MS, tags=tags).info.run_id
        client.log_metric(run, "loss", 0.1 * number)
        return run

    old = [trial(45, n) for n in range(3)]
    young = [trial(2, n) for n in range(3, 5)]
    registered = trial(50, 9)  # a version was registered from this trial: kept whatever its age
    client.create_registered_model("trial-retention-model")
    client.create_model_version("trial-retention-model", f"runs:/{registered}/model", run_id=registered)

    dry = prune_trial_runs(run_settings, dry_run=True)
    assert (dry.found, dry.deleted, dry.kept_registered) == (4, 0, 1) and sorted(dry.run_ids) == sorted(old)
    client.delete_run(old[0])  # deleted by hand (or by a process that could not purge): purged as well

    summary = prune_trial_runs(run_settings)
    assert (summary.found, summary.deleted, summary.purged) == (4, 2, 3), summary.line()
    with sqlite3.connect(settings.state_dir / "mlflow" / "mlflow.db") as store:
        left = {row[0] for row in store.execute("SELECT run_uuid FROM runs WHERE experiment_id = ?", (experiment,))}
    assert left == {parent, registered, *young}  # the old trials' rows are gone for good, not only hidden
    for run_id in old:
        with pytest.raises(MlflowException):
            client.get_run(run_id)

    again = prune_trial_runs(run_settings)  # idempotent
    assert (again.found, again.deleted, again.purged) == (1, 0, 0)

    # the command line says the same, and a horizon of 1 day takes the young trials too
    monkey = pytest.MonkeyPatch()
    with monkey.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
        patch.setenv("STATE_DIR", str(settings.state_dir))
        patch.setenv("MLFLOW_EXPERIMENT", "trial-retention-test")
        patch.setenv("MODEL_NAME", "trial-retention-model")
        patch.setenv("TRIAL_RETENTION_DAYS", "1")
        assert main(["--env", "local"]) == 0
    assert "3 found, 2 deleted, 2 purged, 1 kept (registered)" in capsys.readouterr().out
