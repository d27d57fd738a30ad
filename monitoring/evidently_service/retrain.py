"""Retraining that triggers itself: the drift service starts a run of the training deployment when its data moves.

Two reasons, both computed here already: the data-drift share above RETRAIN_DRIFT_SHARE for RETRAIN_DRIFT_COMPUTATIONS
consecutive computations, or the served model's realized ROC AUC below REALIZED_AUC_FLOOR (with OUTCOME_MIN_LABELS
behind it). Either starts one flow run of `model_tuning_and_uploading/churn-training` through Prefect's REST API,
at most once per RETRAIN_COOLDOWN_HOURS (the last trigger is kept in STATE_DIR, so a restart does not reset the
cool-down). Before it starts one, it prepares the data (mlops.production_data): with RETRAIN_MIN_PRODUCTION_ROWS
settled production rows it builds a new snapshot from them, else it says why it keeps the current one; and when the
snapshot to train on is the one the served model was trained on, it starts nothing and records "nothing new to
learn" (an identical model would come out). The reason is the run's name and a `retrain-reason:<kind>` tag,
visible in the Prefect UI; the trained challenger then waits for the promotion gate (make promote), or goes
straight through it with RETRAIN_AUTO_PROMOTE. RETRAIN_TRIGGERS=false turns it off.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from mlops.control_plane import prefect_auth
from mlops.settings import Settings

log = logging.getLogger(__name__)

TRAINING_FLOW = "model_tuning_and_uploading"
TRAINING_DEPLOYMENT = "churn-training"  # model_orchestration.deployments.DEPLOYMENT_NAME
# after "nothing new to learn", the next look (new outcomes may have settled since), unless the cool-down is shorter
SKIPPED_RECHECK_S = 600.0


def start_training_run(settings: Settings, name: str, tags: list[str]) -> str:
    """One flow run of the training deployment (Prefect REST API); its id. Raises with PREFECT_API_URL named."""
    api = settings.prefect_api_url.rstrip("/")
    try:
        auth = prefect_auth(settings)
        found = requests.get(f"{api}/deployments/name/{TRAINING_FLOW}/{TRAINING_DEPLOYMENT}", auth=auth, timeout=5)
        if found.status_code == 401:
            raise PermissionError(
                f"Prefect at PREFECT_API_URL={api} refused this service's credentials: set PREFECT_API_AUTH_STRING"
            )
        if found.status_code == 404:
            raise LookupError(
                f"deployment {TRAINING_FLOW}/{TRAINING_DEPLOYMENT} is not registered at PREFECT_API_URL={api} "
                "(make apply-model-train-flow)"
            )
        found.raise_for_status()
        created = requests.post(
            f"{api}/deployments/{found.json()['id']}/create_flow_run",
            json={"name": name, "tags": tags, "parameters": {"promote": True} if settings.retrain_auto_promote else {}},
            auth=auth,
            timeout=5,
        )
        created.raise_for_status()
    except requests.RequestException as error:
        raise ConnectionError(f"Prefect unreachable at PREFECT_API_URL={api}: {error}") from error
    return str(created.json()["id"])


class RetrainTrigger:
    def __init__(
        self,
        settings: Settings,
        start_run: Callable[[str, list[str]], str] | None = None,
        clock: Callable[[], float] = time.time,
        prepare: Callable[[str | None], tuple[bool, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.start_run = start_run or (lambda name, tags: start_training_run(settings, name, tags))
        self.prepare = prepare or (lambda run_id: prepare_retraining(settings, run_id))
        self.clock = clock
        self.state_path = Path(settings.state_dir) / "retrain-trigger.json"
        self.consecutive: dict[str, int] = {}
        self.fired: list[dict[str, Any]] = []  # this process's triggers (also in the state file)
        self.suppressed = 0

    @property
    def enabled(self) -> bool:
        return self.settings.retrain_triggers

    # ------------------------------------------------------------------ observations
    def observe_drift(self, dataset: str, share: float, run_id: str | None = None) -> str | None:
        """One drift computation (of the model `run_id` served); the flow run id when this one triggered training."""
        high = share > self.settings.retrain_drift_share
        self.consecutive[dataset] = self.consecutive.get(dataset, 0) + 1 if high else 0
        needed = self.settings.retrain_drift_computations
        if not high or self.consecutive[dataset] < needed:
            return None
        reason = (
            f"drift share {share:.2f} > RETRAIN_DRIFT_SHARE {self.settings.retrain_drift_share:g} "
            f"for {self.consecutive[dataset]} computations"
        )
        return self._fire("drift", dataset, reason, run_id)

    def observe_performance(self, dataset: str, run_id: str, roc_auc: float) -> str | None:
        if roc_auc >= self.settings.realized_auc_floor:
            return None
        reason = (
            f"realized ROC AUC {roc_auc:.3f} of run {run_id} < REALIZED_AUC_FLOOR {self.settings.realized_auc_floor:g}"
        )
        return self._fire("decay", dataset, reason, run_id)

    # ------------------------------------------------------------------ firing
    def last(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def _fire(self, kind: str, dataset: str, reason: str, served_run_id: str | None) -> str | None:
        if not self.enabled:
            return None
        now = self.clock()
        previous = self.last()
        cooldown = self.settings.retrain_cooldown_hours * 3600
        if previous is not None and previous.get("flow_run_id") is None:  # "nothing new to learn": look again soon
            cooldown = min(cooldown, SKIPPED_RECHECK_S)
        if previous is not None and now - float(previous.get("at", 0)) < cooldown:
            self.suppressed += 1
            log.debug("retrain not triggered (cool-down since %s): %s", previous.get("reason"), reason)
            return None
        try:
            start, data = self.prepare(served_run_id)
        except Exception as error:  # S3 or MLflow down: train on the current snapshot rather than not at all
            start, data = True, f"kept the current snapshot: production data not read ({error})"
        record = {"at": now, "kind": kind, "dataset": dataset, "reason": reason, "data": data, "flow_run_id": None}
        if not start:  # recorded like a trigger, so the cool-down spares the next computations the same work
            self._remember(record, dataset)
            log.warning("retrain wanted (%s) but not started: %s", reason, data)
            return None
        try:
            run_id = self.start_run(f"retrain ({kind}): {reason}"[:200], ["retrain", f"retrain-reason:{kind}", dataset])
        except Exception as error:  # Prefect down or no deployment: say why, try again at the next computation
            log.warning("retrain wanted (%s) but not started: %s", reason, error)
            return None
        self._remember(record | {"flow_run_id": run_id}, dataset)
        log.warning("retraining triggered: %s; %s (Prefect flow run %s)", reason, data, run_id)
        return run_id

    def _remember(self, record: dict[str, Any], dataset: str) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.state_path.with_name(f".{self.state_path.name}.tmp")
        scratch.write_text(json.dumps(record))
        scratch.replace(self.state_path)
        self.fired.append(record)
        self.consecutive[dataset] = 0

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "drift_share": self.settings.retrain_drift_share,
            "drift_computations": self.settings.retrain_drift_computations,
            "cooldown_hours": self.settings.retrain_cooldown_hours,
            "consecutive": dict(self.consecutive),
            "last": self.last(),
            "suppressed": self.suppressed,
        }


def prepare_retraining(settings: Settings, served_run_id: str | None) -> tuple[bool, str]:
    """(start?, what data): a snapshot from production when there is enough (mlops.production_data), and no run
    at all when the snapshot to train on is the one the served model already learned from."""
    from mlflow import MlflowClient

    from mlops.production_data import snapshot_from_production
    from mlops.spec import FeatureSpec

    built = snapshot_from_production(settings, FeatureSpec.load(settings.feature_spec), say=log.info)
    if served_run_id:
        seen = MlflowClient(settings.mlflow_tracking_uri).get_run(served_run_id).data.tags.get("data_hash")
        if seen == built.snapshot.data_hash:
            return False, (
                f"nothing new to learn: the served model (run {served_run_id}) was trained on snapshot {seen}; "
                f"{built.note}"
            )
    return True, built.note
