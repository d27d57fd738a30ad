"""The retention settings, a part of `mlops.settings.Settings` (which inherits them): how long the prediction log
keeps its rows before the archive takes them, and where and how often it does (mlops.archive)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class RetentionSettings(BaseModel):
    prediction_retention_days: int = Field(
        default=90,
        ge=1,
        description="predictions, outcomes and settlements older than this are archived to S3, then deleted",
    )
    archive_prefix: str = Field(
        default="archive", description="S3 prefix (in S3_BUCKET) of the archive: <prefix>/<table>/date=.../*.parquet"
    )
    archive_chunk_rows: int = Field(
        default=50_000, ge=100, description="rows read, written and deleted per archive step (bounds its memory)"
    )
    archive_interval_hours: float = Field(default=24.0, gt=0, description="schedule of the archive deployment")
    mongo_ttl_margin_days: int = Field(
        default=30,
        ge=1,
        description="MongoDB only: a TTL index deletes predictions this long after the retention horizon (a safety "
        "net should the archive stop running)",
    )
    trial_retention_days: int = Field(
        default=30,
        ge=1,
        description="MLflow trial runs (tag kind=trial) older than this are deleted, then purged; parent runs and "
        "registered versions' runs stay",
    )
    mlflow_backend_store_file: Path | None = Field(
        default=None,
        description="MLflow's SQLite backend store, where this process can open it (trial runs are purged from it); "
        "empty: STATE_DIR/mlflow/mlflow.db",
    )
    quarantine_max_bytes: int = Field(
        default=100_000_000,
        ge=10_000,
        description="each store's quarantine of refused entries holds at most this many bytes; past it, refused "
        "entries are counted (/health, metrics) and dropped",
    )
    reports_keep: int = Field(
        default=240, ge=1, description="drift reports kept in REPORTS_DIR (240: 30 days at one every 3 h); older leave"
    )
    model_cache_keep: int = Field(
        default=5, ge=1, description="models kept in STATE_DIR/model-cache (the last served always stays)"
    )
    backup_location: str | None = Field(
        default=None,
        description="where backups go: a folder or s3://bucket/prefix; empty: a folder beside STATE_DIR "
        "(<STATE_DIR>-backups)",
    )
    backup_volumes_dir: Path | None = Field(
        default=None,
        description="a folder whose every subfolder is backed up and restored as a tree of its own beside STATE_DIR "
        "(compose: each service's volume mounted under it); empty: STATE_DIR only",
    )
    backup_buckets: str = Field(
        default="",
        description="buckets backed up beside S3_BUCKET, comma-separated names or s3:// URIs (compose: MLflow's "
        "artifact bucket)",
    )
    backup_keep: int = Field(default=7, ge=1, description="backups the scheduled backup flow keeps (newest first)")
    backup_interval_hours: float = Field(
        default=24.0, ge=0, description="schedule of the backup deployment; 0: not scheduled"
    )
    audit_log_max_bytes: int = Field(
        default=10_000_000, ge=10_000, description="the promotion audit log is rotated past this size (5 files kept)"
    )
