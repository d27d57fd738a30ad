"""The training deployment: `model_tuning_and_uploading` on an interval schedule, served by this process, with the
registry side's upkeep: `prune_trial_runs` (old MLflow trial runs) and, natively, `backup_platform`.

Prefect 3 has no agents: `python -m model_orchestration.deployments` registers the deployment and runs its
scheduled flow runs itself (the native program `train-deployment`, the compose service of the Prefect worker).
`python -m model_orchestration.deployments trigger` asks the server for one run now and waits for it to be accepted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from mlops.aws import ServiceUnavailable
from mlops.settings import Settings
from model_orchestration.prefect_process import run_against_prefect, serve_deployments
from model_orchestration.train_flow import FLOW_NAME, model_tuning_and_uploading

DEPLOYMENT_NAME = "churn-training"
FULL_NAME = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"
TRIALS_DEPLOYMENT = "trial-run-retention"


def deployments(settings: Settings) -> list[Any]:
    from model_orchestration.backup_flow import deployment as backup_deployment
    from model_orchestration.trial_retention_flow import prune_trial_runs

    served = [
        model_tuning_and_uploading.to_deployment(
            name=DEPLOYMENT_NAME,
            interval=timedelta(hours=settings.train_interval_hours),
            parameters={"env": settings.env},
            tags=["training", settings.env],
            description="Tune XGBoost with hyperopt, log every trial to MLflow, register the best as 'challenger'.",
        ),
        prune_trial_runs.to_deployment(
            name=TRIALS_DEPLOYMENT,
            interval=timedelta(hours=settings.archive_interval_hours),
            parameters={"env": settings.env},
            tags=["retention", settings.env],
            description="Delete, then purge, MLflow trial runs older than TRIAL_RETENTION_DAYS.",
        ),
    ]
    if settings.backup_interval_hours > 0:
        served.append(backup_deployment(settings))
    return served


def trigger(wait_seconds: float) -> str:
    """Start one run of the served deployment now; waits until the deployment is registered."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            flow_run = run_deployment(FULL_NAME, timeout=0)
            return str(flow_run.id)
        except ObjectNotFound:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"deployment {FULL_NAME} is not registered after {wait_seconds:.0f}s: is the train-deployment "
                    "process running? (make apply-model-train-flow starts it)"
                ) from None
            time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_orchestration.deployments",
        description=f"Serve the Prefect deployment {FULL_NAME} on its schedule, or trigger one run now.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="register the deployment and run its scheduled flow runs (default)")
    run_now = sub.add_parser("trigger", help="start one flow run of the deployment now")
    run_now.add_argument("--wait", type=float, default=60, help="seconds to wait for the deployment to appear")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        if args.command == "trigger":
            run_id = trigger(args.wait)
            ui = settings.prefect_api_url.removesuffix("/api")
            print(f"started flow run {run_id} of {FULL_NAME}: {ui}/runs/flow-run/{run_id}")
        else:
            serve_deployments(deployments(settings))

    return run_against_prefect("model_orchestration.deployments", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
