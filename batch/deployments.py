"""The daily batch deployment: `daily_batch_predictions` on a cron schedule (BATCH_CRON), served by this process.

Prefect 3 has no agents: `python -m batch.deployments` registers the deployment and runs its scheduled flow runs
itself (like model_orchestration.deployments for training).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefect.settings import PREFECT_API_URL, temporary_settings

from batch.flow import FLOW_NAME, daily_batch_predictions, default_locations
from mlops.aws import ServiceUnavailable
from mlops.settings import ConfigurationError, Settings, load_settings
from model_orchestration.train_flow import check_prefect

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
    try:
        settings = load_settings(args.env)
        check_prefect(settings.prefect_api_url)
        with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
            print(f"serving {FULL_NAME} on cron '{settings.batch_cron}' (Ctrl-C to stop)", flush=True)
            serve(settings)
    except (ServiceUnavailable, ConfigurationError) as error:
        print(f"batch.deployments: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
