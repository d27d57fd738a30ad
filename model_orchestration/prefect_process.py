"""What every long-running Prefect process of ours does first: settings, Prefect reachable, then the work.

The training, reporting and batch deployments (and `trigger`) share it, so each reports a bad setting or a dead
Prefect server the same way: one line naming the setting on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mlops.aws import ServiceUnavailable
from mlops.settings import ConfigurationError, Settings, load_settings


def run_against_prefect(prog: str, env: str | None, work: Callable[[Settings], None]) -> int:
    """Load the settings of `env`, check PREFECT_API_URL answers, run `work` with Prefect's client pointed there."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from model_orchestration.train_flow import check_prefect

    try:
        settings = load_settings(env)
        check_prefect(settings.prefect_api_url)
        with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
            work(settings)
    except (ServiceUnavailable, ConfigurationError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
