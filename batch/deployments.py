"""The batch deployments, served by this one process (Prefect 3 has no agents; like model_orchestration.deployments):

- `daily_batch_predictions/churn-batch-daily`: the day's account files, on BATCH_CRON;
- `daily_batch_predictions/churn-batch-customers`: every customer of the online store (batch by id), on BATCH_CRON;
- `materialize_online_store/churn-online-store`: the feature store's newest snapshot into the online store, every
  MATERIALIZE_INTERVAL_HOURS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from batch.flow import FLOW_NAME, daily_batch_predictions, default_locations
from mlops.settings import Settings
from model_orchestration.prefect_process import run_against_prefect, serve_deployments

DEPLOYMENT_NAME = "churn-batch-daily"
CUSTOMERS_DEPLOYMENT = "churn-batch-customers"
MATERIALIZE_DEPLOYMENT = "churn-online-store"
FULL_NAME = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"


def deployments(settings: Settings) -> list[Any]:
    from model_orchestration.materialize_flow import materialize_online_store

    input_uri, output_uri = default_locations(settings)
    return [
        daily_batch_predictions.to_deployment(
            name=DEPLOYMENT_NAME,
            cron=settings.batch_cron,
            parameters={"input_uri": input_uri, "output_uri": output_uri, "env": settings.env},
            tags=["batch", settings.env],
            description="Score the day's account files with the served model; rejects fail the run.",
        ),
        daily_batch_predictions.to_deployment(
            name=CUSTOMERS_DEPLOYMENT,
            cron=settings.batch_cron,
            parameters={"output_uri": output_uri, "env": settings.env, "all_customers": True},
            tags=["batch", "online-store", settings.env],
            description="Score every customer of the online store (no input files).",
        ),
        materialize_online_store.to_deployment(
            name=MATERIALIZE_DEPLOYMENT,
            interval=timedelta(hours=settings.materialize_interval_hours),
            parameters={"env": settings.env},
            tags=["online-store", settings.env],
            description="Latest feature row of every customer: S3 feature store -> ONLINE_STORE_URI.",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.deployments", description=f"Serve {FULL_NAME}.")
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        serve_deployments(deployments(settings))

    return run_against_prefect("batch.deployments", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
