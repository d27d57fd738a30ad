"""The reports deployments, served by this process: `create_report` every REPORT_INTERVAL_HOURS (3 h), and
`archive_prediction_log` (mlops.archive) every ARCHIVE_INTERVAL_HOURS (24 h).

Prefect 3 has no agents: `python -m reporting.deployments` registers the deployment and runs its scheduled
flow runs itself (native program `report-deployment`, compose service of the same name;
`make apply-prediction-reporting`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from mlops.settings import Settings
from model_orchestration.prefect_process import run_against_prefect, serve_deployments
from reporting.create_report import FLOW_NAME, create_report

DEPLOYMENT_NAME = "drift-reports"
FULL_NAME = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"
ARCHIVE_DEPLOYMENT = "prediction-log-retention"


def deployments(settings: Settings) -> list[Any]:
    from model_orchestration.archive_flow import archive_prediction_log

    return [
        create_report.to_deployment(
            name=DEPLOYMENT_NAME,
            interval=timedelta(hours=settings.report_interval_hours),
            parameters={"env": settings.env},
            tags=["reporting", settings.env],
            description="Evidently drift report of the last window of predictions, written where nginx serves it.",
        ),
        archive_prediction_log.to_deployment(
            name=ARCHIVE_DEPLOYMENT,
            interval=timedelta(hours=settings.archive_interval_hours),
            parameters={"env": settings.env},
            tags=["retention", settings.env],
            description="Predictions, outcomes and settlements past PREDICTION_RETENTION_DAYS: Parquet in S3, then "
            "deleted from the prediction log.",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reporting.deployments", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        serve_deployments(deployments(settings))

    return run_against_prefect("reporting.deployments", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
