"""Prefect flow `archive_prediction_log`: rows older than PREDICTION_RETENTION_DAYS -> Parquet in S3, then deleted.

A thin wrapper over mlops.archive (which `make archive` runs directly); served every ARCHIVE_INTERVAL_HOURS by the
report deployment's process, the one that already reads the prediction log on a schedule.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mlops.archive import archive_prediction_log as archive
from mlops.settings import load_flow_settings

FLOW_NAME = "archive_prediction_log"


@flow(name=FLOW_NAME, log_prints=True)
def archive_prediction_log(
    env: str | None = None, dry_run: bool = False, settings_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Archive, then delete, what is past the retention horizon; returns the counts (archived == deleted)."""
    settings = load_flow_settings(env, settings_overrides)
    logger = get_run_logger()
    summary = archive(settings, dry_run=dry_run, say=logger.info)
    logger.info(summary.line())
    return summary.as_dict()
