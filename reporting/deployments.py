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

from mlops.settings import Settings
from model_orchestration.prefect_process import run_against_prefect
from reporting.create_report import FLOW_NAME, create_report

DEPLOYMENT_NAME = "drift-reports"
FULL_NAME = f"{FLOW_NAME}/{DEPLOYMENT_NAME}"


def serve(interval_hours: float, env: str) -> None:
    create_report.serve(
        name=DEPLOYMENT_NAME,
        interval=timedelta(hours=interval_hours),
        parameters={"env": env},
        tags=["reporting", env],
        description="Evidently drift report of the last window of predictions, written where nginx serves it.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reporting.deployments", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        print(f"serving {FULL_NAME} every {settings.report_interval_hours:g} h (Ctrl-C to stop)", flush=True)
        serve(settings.report_interval_hours, settings.env)

    return run_against_prefect("reporting.deployments", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
