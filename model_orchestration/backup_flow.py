"""Prefect flow `backup_platform`: a backup of all state now (mlops.backup), then the oldest beyond BACKUP_KEEP go.

Served every BACKUP_INTERVAL_HOURS by the training deployment's process (the registry side, which holds MLflow's
writer) in the native runtime, where every program shares STATE_DIR. Compose services keep their state in volumes
of their own: the compose file sets BACKUP_INTERVAL_HOURS=0 (docs/retention.md says what backs those up).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mlops.backup import create_backup, default_location, prune_backups
from mlops.settings import load_flow_settings

FLOW_NAME = "backup_platform"


@flow(name=FLOW_NAME, log_prints=True)
def backup_platform(env: str | None = None, settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Take a backup and keep the newest BACKUP_KEEP; returns the manifest's counts and what was pruned."""
    settings = load_flow_settings(env, settings_overrides)
    logger = get_run_logger()
    location = default_location(settings)
    manifest = create_backup(settings, location, say=logger.info)
    pruned = prune_backups(settings, location, settings.backup_keep)
    kept = settings.backup_keep
    logger.info("backup %s taken; %d older removed (BACKUP_KEEP=%d)", manifest["location"], len(pruned), kept)
    return {"location": manifest["location"], "counts": manifest["counts"], "pruned": pruned}
