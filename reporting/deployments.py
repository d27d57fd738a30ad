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

from mlops.aws import ServiceUnavailable
from mlops.settings import ConfigurationError, load_settings
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
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from model_orchestration.train_flow import check_prefect

    parser = argparse.ArgumentParser(prog="python -m reporting.deployments", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        check_prefect(settings.prefect_api_url)
        with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
            print(f"serving {FULL_NAME} every {settings.report_interval_hours:g} h (Ctrl-C to stop)", flush=True)
            serve(settings.report_interval_hours, settings.env)
    except (ServiceUnavailable, ConfigurationError) as error:
        print(f"deployments: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
