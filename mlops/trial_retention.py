"""MLflow's trial runs are bounded: hyperopt trials older than TRIAL_RETENTION_DAYS are deleted, then purged.

Every training logs one child run per trial (tag `kind=trial`, model_orchestration.trial_logging): 50 a run at
defaults, every TRAIN_INTERVAL_HOURS, for ever. What a trial says stays in its parent run (the best parameters and
metrics, the model, the importance plot), so after a while the children are noise in the UI and rows in the backend
store. Kept always: parent (tuning) runs, any run a registered model version was made from, and trials younger than
the horizon.

Two steps, as MLflow has them: `delete_run` through the tracking server (the writer's credentials; the run leaves
every search and the UI but stays restorable with `mlflow runs restore`), then `mlflow gc` of exactly those runs
against the backend store, which removes their rows and any artifacts for good. The purge needs the store's file:
natively it is STATE_DIR/mlflow/mlflow.db, beside this process; a process that cannot see it (a compose container
other than MLflow's) deletes only and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.aws import ServiceUnavailable
from mlops.settings import ConfigurationError, Settings, load_settings

PAGE = 500
TRIAL_FILTER = "tags.kind = 'trial'"


@dataclass
class TrialPrune:
    horizon_days: int
    found: int = 0  # trial runs older than the horizon
    deleted: int = 0
    purged: int = 0
    kept_registered: int = 0  # old trials a registered version was made from
    purge_skipped: str | None = None  # why the deleted runs were not purged here
    run_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"trial runs older than {self.horizon_days} d: {self.found} found, {self.deleted} deleted, "
            f"{self.purged} purged, {self.kept_registered} kept (registered)"
        )
        return text + (f"; not purged here: {self.purge_skipped}" if self.purge_skipped else "")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "run_ids"}


def backend_store(settings: Settings) -> Path | None:
    """The MLflow backend store this process can open (MLFLOW_BACKEND_STORE_FILE, else the native runtime's
    STATE_DIR/mlflow/mlflow.db), else None."""
    path = settings.mlflow_backend_store_file or settings.state_dir / "mlflow" / "mlflow.db"
    return path if path.is_file() else None


def old_trials(client: Any, experiment_id: str, before_ms: int) -> list[tuple[str, bool]]:
    """(run id, already deleted?) of the experiment's trial runs that started before `before_ms`, oldest first,
    every page; deleted ones too, since a process that could not purge them left them deleted."""
    from mlflow.entities import ViewType

    found, token = [], None
    query = f"{TRIAL_FILTER} and attributes.start_time < {int(before_ms)}"
    while True:
        page = client.search_runs(
            [experiment_id],
            query,
            run_view_type=ViewType.ALL,
            max_results=PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        found += [(run.info.run_id, run.info.lifecycle_stage == "deleted") for run in page]
        token = page.token
        if not token:
            return found


def registered_run_ids(client: Any, model_name: str) -> set[str]:
    from mlflow.exceptions import MlflowException

    try:
        return {v.run_id for v in client.search_model_versions(f"name = '{model_name}'") if v.run_id}
    except MlflowException:
        return set()


def purge(settings: Settings, store: Path, run_ids: list[str]) -> None:
    """`mlflow gc` of these (deleted) runs against the backend store, in chunks (one command line each)."""
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    for start in range(0, len(run_ids), 200):
        chunk = ",".join(run_ids[start : start + 200])
        command = [mlflow_cli, "gc", "--backend-store-uri", f"sqlite:///{store}", "--run-ids", chunk]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mlflow gc failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")


def prune_trial_runs(
    settings: Settings, dry_run: bool = False, say: Callable[[str], None] = print, now: float | None = None
) -> TrialPrune:
    from mlflow.tracking import MlflowClient

    from mlops import registry

    days = settings.trial_retention_days
    summary = TrialPrune(horizon_days=days)
    registry.check_mlflow(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    name = registry.experiment_for(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        say(f"no experiment {name!r} yet: nothing to prune")
        return summary
    before_ms = int(((now if now is not None else time.time()) - days * 86_400) * 1000)
    candidates = old_trials(client, experiment.experiment_id, before_ms)
    keep = registered_run_ids(client, registry.model_name_for(settings))
    summary.found = len(candidates)
    chosen = [(run_id, deleted) for run_id, deleted in candidates if run_id not in keep]
    summary.kept_registered = len(candidates) - len(chosen)
    summary.run_ids = [run_id for run_id, _ in chosen]
    if dry_run or not chosen:
        return summary
    for run_id, deleted in chosen:
        if not deleted:
            client.delete_run(run_id)
            summary.deleted += 1
            if summary.deleted % 500 == 0:
                say(f"deleted {summary.deleted} trial runs")
    store = backend_store(settings)
    if store is None:
        summary.purge_skipped = (
            "the backend store is not on this machine: `make prune-trials` purges on MLflow's host "
            "(MLFLOW_BACKEND_STORE_FILE)"
        )
        return summary
    purge(settings, store, summary.run_ids)
    summary.purged = len(summary.run_ids)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.trial_retention",
        description="Delete, then purge, the MLflow trial runs (tag kind=trial) older than TRIAL_RETENTION_DAYS; "
        "parent runs and the runs of registered versions stay.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        summary = prune_trial_runs(settings, dry_run=args.dry_run, say=lambda line: print(line, flush=True))
    except (ConfigurationError, ServiceUnavailable, RuntimeError) as error:
        print(f"prune-trials: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict()) if args.json else summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
