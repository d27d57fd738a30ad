"""Prefect flow `backup_platform`: a backup of all state now (mlops.backup), then the oldest beyond BACKUP_KEEP go.

Served every BACKUP_INTERVAL_HOURS natively by the training deployment's process, where every program shares
STATE_DIR. Compose services keep their state in volumes of their own: the compose service `backup` mounts them all
(BACKUP_VOLUMES_DIR) and serves this deployment alone (`python -m model_orchestration.backup_flow`); the registry
side's training deployment has BACKUP_INTERVAL_HOURS=0 there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger

from mlops.backup import create_backup, default_location, prune_backups
from mlops.settings import Settings, load_flow_settings

FLOW_NAME = "backup_platform"
DEPLOYMENT_NAME = "platform-backup"


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


def deployment(settings: Settings) -> Any:
    """The scheduled deployment (BACKUP_INTERVAL_HOURS > 0), whichever process serves it."""
    return backup_platform.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=timedelta(hours=settings.backup_interval_hours),
        parameters={"env": settings.env},
        tags=["backup", settings.env],
        description="Back up all state (STATE_DIR or the volumes, MongoDB, Redis, the buckets); keep the newest "
        "BACKUP_KEEP.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the backup deployment alone (compose service `backup`)."""
    from model_orchestration.prefect_process import run_against_prefect, serve_deployments

    parser = argparse.ArgumentParser(
        prog="python -m model_orchestration.backup_flow",
        description="Serve the backup deployment: a backup every BACKUP_INTERVAL_HOURS, the newest BACKUP_KEEP kept.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    args = parser.parse_args(argv)

    def work(settings: Settings) -> None:
        if settings.backup_interval_hours <= 0:
            raise SystemExit("BACKUP_INTERVAL_HOURS is 0: no backup deployment to serve (make backup takes one)")
        serve_deployments([deployment(settings)])

    return run_against_prefect("model_orchestration.backup_flow", args.env, work)


if __name__ == "__main__":
    sys.exit(main())
