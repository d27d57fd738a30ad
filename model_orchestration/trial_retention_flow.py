"""Prefect flow `prune_trial_runs`: MLflow trial runs older than TRIAL_RETENTION_DAYS are deleted, then purged.

A thin wrapper over mlops.trial_retention (which `make prune-trials` runs directly); served every
ARCHIVE_INTERVAL_HOURS by the training deployment's process, the registry side that holds MLflow's writer.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mlops.settings import load_flow_settings
from mlops.trial_retention import prune_trial_runs as prune

FLOW_NAME = "prune_trial_runs"


@flow(name=FLOW_NAME, log_prints=True)
def prune_trial_runs(
    env: str | None = None, dry_run: bool = False, settings_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Delete (and purge, where MLflow's backend store is on this machine) the old trial runs; returns the counts."""
    settings = load_flow_settings(env, settings_overrides)
    logger = get_run_logger()
    summary = prune(settings, dry_run=dry_run, say=logger.info)
    logger.info(summary.line())
    return summary.as_dict()
