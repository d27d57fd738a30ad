"""The reports deployment: `create_report` every REPORT_INTERVAL_HOURS (3 h), served by this process.

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


def deployments(settings: Settings) -> list[Any]:
    return [
        create_report.to_deployment(
            name=DEPLOYMENT_NAME,
            interval=timedelta(hours=settings.report_interval_hours),
            parameters={"env": settings.env},
            tags=["reporting", settings.env],
            description="Evidently drift report of the last window of predictions, written where nginx serves it.",
        )
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
