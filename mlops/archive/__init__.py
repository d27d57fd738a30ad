"""The prediction log's archive: rows older than PREDICTION_RETENTION_DAYS go to S3 as Parquet, then leave the log.

Tables `settlements`, `outcomes` and `predictions` (SQLite natively, MongoDB in compose), each written under
`s3://<S3_BUCKET>/<ARCHIVE_PREFIX>/<table>/date=YYYY-MM-DD/[model_run_id=<run>/]part-<first key>.parquet`
(Hive-style partitions: pandas, Spark and Athena read them as columns), ARCHIVE_CHUNK_ROWS at a time, oldest
first. A chunk is deleted from the log only after its objects are written, and only the rows written: the count
deleted must equal the count archived, else the run stops and says so. A run killed half way is resumed by the
next one: it starts from the oldest rows left, so it writes the same objects again (same names) before deleting.
When a run ends, the log remembers its horizon (`archived_before`): outcomes observed before it are reported
`archived`, not `unknown` (mlops.stores.outcomes).

    make archive                       # or: python -m mlops.archive [--env local|cloud] [--dry-run]

The report deployment's process also serves it every ARCHIVE_INTERVAL_HOURS (flow `archive_prediction_log`).
"""

from mlops.archive.run import ArchiveError, ArchiveSummary, archive_prediction_log, archived_days, read_archive

__all__ = ["ArchiveError", "ArchiveSummary", "archive_prediction_log", "archived_days", "read_archive"]
