"""One archive run: every table's rows older than the horizon, chunk by chunk, to Parquet in S3, then deleted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mlops import aws
from mlops.archive.sources import TABLES, ArchiveSource, MongoSource, Table, open_source
from mlops.settings import Settings
from mlops.stores.base import redact
from mlops.stores.ids import iso

log = logging.getLogger(__name__)
UNPARTITIONED = "none"  # a row without a model run id (never written by the platform) still has a partition


class ArchiveError(RuntimeError):
    """The archive stopped rather than lose a row; the message says what differed."""


@dataclass
class ArchiveSummary:
    horizon: str
    location: str
    dry_run: bool = False
    archived: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        counts = ", ".join(f"{t} {self.archived.get(t, 0)}" for t in (table.name for table in TABLES))
        verb = "would archive" if self.dry_run else "archived and deleted"
        return f"archive: {verb} rows before {self.horizon}: {counts} ({self.objects} objects in {self.location})"


def _location(settings: Settings) -> str:
    return f"s3://{settings.s3_bucket}/{settings.archive_prefix.strip('/')}"


def _object_key(settings: Settings, table: Table, date: str, run: str | None, first_key: str) -> str:
    parts = [settings.archive_prefix.strip("/"), table.name, f"date={date}"]
    if table.by_run:
        parts.append(f"model_run_id={run or UNPARTITIONED}")
    return "/".join([*parts, f"part-{first_key}.parquet"])


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _write_chunk(s3: Any, settings: Settings, table: Table, rows: list[dict[str, Any]]) -> int:
    """Objects for one chunk, one per (date, model run); returns how many were written."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        run = row.get("model_run_id") if table.by_run else None
        groups.setdefault((str(row[table.time])[:10], run), []).append(row)
    for (date, run), group in groups.items():
        first = min(str(row[table.key]) for row in group)
        key = _object_key(settings, table, date, run, first)
        if table.by_run:  # a partition column lives in the path only (Spark and Athena refuse it twice)
            group = [{k: v for k, v in row.items() if k != "model_run_id"} for row in group]
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=_parquet(group))
    return len(groups)


class _S3:
    """The archive's S3 calls; a failure names the bucket and the endpoint setting (the rows stay in the log)."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.client = settings, aws.client("s3", settings)

    def put_object(self, **kwargs: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(**kwargs)
        except (BotoCoreError, ClientError) as error:
            raise aws.ServiceUnavailable(
                f"archive not written to s3://{kwargs['Bucket']} (S3_BUCKET, {aws.describe_endpoint(self.settings)}): "
                f"{error}; nothing was deleted from the log"
            ) from error


def archive_prediction_log(
    settings: Settings,
    now: datetime | None = None,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
    source: ArchiveSource | None = None,
) -> ArchiveSummary:
    """Archive and delete every row older than PREDICTION_RETENTION_DAYS; `dry_run` only counts them."""
    started = datetime.now(UTC)
    horizon = (now or started) - timedelta(days=settings.prediction_retention_days)
    summary = ArchiveSummary(horizon=iso(horizon), location=_location(settings), dry_run=dry_run)
    source = source or open_source(settings.prediction_log_location)
    say(f"archive: {redact(source.uri)}: rows before {summary.horizon} -> {summary.location}")
    try:
        if dry_run:
            for table in TABLES:
                summary.archived[table.name] = source.count_before(table, horizon)
            return summary
        s3 = _S3(settings)
        for table in TABLES:
            archived = deleted = 0
            while rows := source.oldest(table, horizon, settings.archive_chunk_rows):
                summary.objects += _write_chunk(s3, settings, table, rows)
                archived += len(rows)
                gone = source.delete(table, [str(row[table.key]) for row in rows])
                deleted += gone
                if gone != len(rows):
                    raise ArchiveError(
                        f"{table.name}: archived {len(rows)} rows but deleted {gone}: rows changed while archived; "
                        "nothing is lost (every row read was written first); run the archive again"
                    )
                say(f"archive: {table.name}: {archived} rows so far (up to {rows[-1][table.time]})")
            summary.archived[table.name], summary.deleted[table.name] = archived, deleted
        source.set_horizon(summary.horizon)
        if isinstance(source, MongoSource):
            margin = timedelta(days=settings.prediction_retention_days + settings.mongo_ttl_margin_days)
            source.ensure_ttl(int(margin.total_seconds()))
        summary.seconds = round((datetime.now(UTC) - started).total_seconds(), 2)
        run_key = f"{settings.archive_prefix.strip('/')}/_runs/{iso(started)}.json"
        s3.put_object(Bucket=settings.s3_bucket, Key=run_key, Body=json.dumps(summary.as_dict(), indent=1).encode())
        return summary
    finally:
        source.close()


def _table_prefix(settings: Settings, table: str) -> str:
    return f"{settings.archive_prefix.strip('/')}/{table}/"


def archived_days(settings: Settings, table: str) -> list[str]:
    """The `date=` partitions of `table` in the archive, oldest first."""
    keys = [
        o["Key"]
        for o in aws.list_objects(aws.client("s3", settings), settings.s3_bucket, _table_prefix(settings, table))
    ]
    return sorted({k.split("date=", 1)[1].split("/", 1)[0] for k in keys if "date=" in k})


def read_archive(settings: Settings, table: str, day: str | None = None) -> pd.DataFrame:
    """The archived rows of `table` (of one `day` only, when given): what pandas makes of the Parquet objects, with
    the Hive partitions as columns, as Spark reads them."""
    s3 = aws.client("s3", settings)
    prefix = _table_prefix(settings, table)
    frames = []
    for item in aws.list_objects(s3, settings.s3_bucket, prefix + (f"date={day}/" if day else "")):
        body = s3.get_object(Bucket=settings.s3_bucket, Key=item["Key"])["Body"].read()
        frame = pd.read_parquet(io.BytesIO(body))
        for part in item["Key"].removeprefix(prefix).split("/")[:-1]:
            name, _, value = part.partition("=")
            frame[name] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
