"""Backups of everything that is state, taken while the platform runs, and their restore (both runtimes).

    make backup [TO=<folder|s3://bucket/prefix>]       # default TO: STATE_DIR/../<state>-backups
    make restore FROM=<that folder|s3 prefix>/<stamp>  # with the platform down (make down / reset_all)

A backup is one folder `<stamp>/` holding `manifest.json` (every file with its size and SHA-256, the S3 objects,
row counts), `state/` (STATE_DIR's databases, copied consistently with SQLite's online backup API while they are
written, and its files: MLflow's artifacts and users, Prefect's database, the prediction log with outcomes, the
online store, the promotion audit log, retrain state, Kinesis checkpoints, reports, the control-plane secrets the
databases' users were made with) and `s3/<bucket>/` (the feature store bucket: snapshots, the prediction log's
archive, batch files; natively moto keeps it in memory only). What is rebuilt or re-downloaded is left out: logs,
the model cache, Prometheus' TSDB. A backup holds secrets: it is written mode 0700, keep it like them.
Compose keeps state in a volume per service: its backup container mounts them all under BACKUP_VOLUMES_DIR, and
each is a tree of the backup (`volumes/<name>/`, mlops/backup/trees.py); BACKUP_BUCKETS adds MLflow's artifact bucket.
The scheduled flow `backup_platform` (BACKUP_INTERVAL_HOURS) keeps the newest BACKUP_KEEP backups of its folder.
"""

from mlops.backup.store import (
    BackupError,
    create_backup,
    default_location,
    finish_restore,
    list_backups,
    prune_backups,
    restore_backup,
)

__all__ = [
    "BackupError",
    "create_backup",
    "default_location",
    "finish_restore",
    "list_backups",
    "prune_backups",
    "restore_backup",
]
