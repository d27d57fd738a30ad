"""The daily batch deployment: `daily_batch_predictions` on a cron schedule (BATCH_CRON), served by this process.

Prefect 3 has no agents: `python -m batch.deployments` registers the deployment and runs its scheduled flow runs
itself (like model_orchestration.deployments for training).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from batch.flow import FLOW_NAME, daily_batch_predictions, default_locations
from mlops.settings import Settings
from model_orchestration.prefect_process import run_against_prefect

DEPLOYMENT_NAME = "churn-batch-daily"
FULL_NAME = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"


def serve(settings: Settings) -> None:
    input_uri, output_uri = default_locations(settings)
    daily_batch_predictions.serve(
        name=DEPLOYMENT_NAME,
        cron=settings.batch_cron,
        parameters={"input_uri": input_uri, "output_uri": output_uri, "env": settings.env},
        tags=["batch", settings.env],
        description="Score the day's account files with the served model; rejects fail the run.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.deployments", description=f"Serve {FULL_NAME}.")
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        print(f"serving {FULL_NAME} on cron '{settings.batch_cron}' (Ctrl-C to stop)", flush=True)
        serve(settings)

    return run_against_prefect("batch.deployments", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
