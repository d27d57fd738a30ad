"""What every Prefect process of ours does: settings, Prefect reachable, then the work; and how deployments are served.

The training, promotion, reporting and batch entry points (flows run once and the deployment processes) share
`run_against_prefect`, so each reports a bad setting or a dead Prefect server the same way: one line naming the
setting on stderr and exit code 2, never a traceback. `serve_deployments` is the one body of the three
`deployments.py` processes (Prefect 3 has no agents: the process that registers a deployment runs its flow runs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlops.aws import ServiceUnavailable
from mlops.prefect_api import prefect_at
from mlops.settings import ConfigurationError, Settings, load_settings


def run_against_prefect(
    prog: str,
    env: str | None,
    work: Callable[[Settings], int | None],
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Load the settings of `env`, check PREFECT_API_URL answers, run `work` with Prefect's client pointed there.

    `errors`: further exception types `work` may raise that are a user's problem (reported like a bad setting).
    Returns `work`'s exit code (0 when it returns None), or 2 after printing the error."""
    try:
        settings = load_settings(env)
        with prefect_at(settings):
            code = work(settings)
    except (ServiceUnavailable, ConfigurationError, *errors) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return code or 0


def serve_deployments(deployments: Sequence[Any]) -> None:
    """Register `deployments` (from `flow.to_deployment(...)`) and run their scheduled flow runs until stopped,
    saying first what is served on which schedule."""
    from prefect import serve

    for deployment in deployments:
        schedules = [
            str(getattr(s.schedule, "interval", None) or getattr(s.schedule, "cron", ""))
            for s in (deployment.schedules or [])
        ]
        print(f"serving {deployment.flow_name}/{deployment.name} ({', '.join(schedules) or 'no schedule'})", flush=True)
    print("(Ctrl-C to stop)", flush=True)
    serve(*deployments)
