"""The prediction log's archive (mlops.archive): rows per second from SQLite to Parquet in S3, and the bytes a row
costs in the log and in the archive.

    .venv/bin/python bench/bench_archive.py                       # 100k old rows with customer ids, S3 in process
    .venv/bin/python bench/bench_archive.py --rows 1000000 --repeats 3

A fresh SQLite log in a temporary folder gets --rows predictions with customer ids spread over 30 days past the
horizon (plus a day of recent ones the run must keep), written through SQLiteStore.write_many in batches of 50 as the
API does. Each repeat archives all of them (a run per repeat on a fresh copy of the log); printed: median and p99
of the run's wall time, rows/s, log bytes per row before, Parquet bytes per row after, and the ratio of the archive
run to the write of the same rows (its peer, measured side by side in this process).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moto import mock_aws  # noqa: E402

from mlops import aws  # noqa: E402
from mlops.archive import archive_prediction_log  # noqa: E402
from mlops.data import clean, generate_bank_churners  # noqa: E402
from mlops.settings import Settings  # noqa: E402
from mlops.spec import FeatureSpec  # noqa: E402
from mlops.stores.prediction_log import SQLiteStore, make_entry  # noqa: E402

DAYS_KEPT = 90


def fill(path: Path, rows: int) -> float:
    """`rows` old predictions and 1,000 recent ones; returns the seconds the write took."""
    spec = FeatureSpec.load(ROOT / "features.yaml")
    frame = clean(generate_bank_churners(5000, seed=1), spec)
    records = [{c: r[c] for c in spec.feature_columns} for r in frame.to_dict("records")]
    now = datetime.now(UTC)
    store = SQLiteStore(f"sqlite:///{path}")
    started = time.perf_counter()
    batch = []
    for i in range(rows + 1000):
        old = i < rows
        when = now - timedelta(days=DAYS_KEPT + 1 + (i % 30), seconds=i) if old else now - timedelta(seconds=i)
        batch.append(
            make_entry(records[i % 5000], 0.3, f"run-{i % 3}", "http", f"req-{i}", when, customer_id=f"{7e8 + i:.0f}")
        )
        if len(batch) == 50:
            store.write_many(batch)
            batch = []
    if batch:
        store.write_many(batch)
    store.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, mock_aws():
        folder = Path(scratch)
        source = folder / "source.sqlite"
        write_s = fill(source, args.rows)
        log_bytes = source.stat().st_size / (args.rows + 1000)
        settings = Settings(
            _env_file=None, state_dir=folder, aws_endpoint_url=None, aws_access_key_id="x", aws_secret_access_key="x",
            s3_bucket="bench-archive", prediction_retention_days=DAYS_KEPT,
        )  # fmt: skip
        s3 = aws.client("s3", settings)
        s3.create_bucket(Bucket="bench-archive")
        times = []
        for repeat in range(args.repeats):
            log = folder / f"run-{repeat}.sqlite"
            shutil.copy(source, log)
            run = settings.model_copy(
                update={"archive_prefix": f"archive-{repeat}", "prediction_log_uri": f"sqlite:///{log}"}
            )
            started = time.perf_counter()
            summary = archive_prediction_log(run, say=lambda _: None)
            times.append(time.perf_counter() - started)
            assert summary.archived["predictions"] == summary.deleted["predictions"] == args.rows, summary
        objects = s3.list_objects_v2(Bucket="bench-archive", Prefix="archive-0/predictions/")["Contents"]
        parquet_bytes = sum(o["Size"] for o in objects) / args.rows
    median = statistics.median(times)
    p99 = sorted(times)[min(len(times) - 1, int(0.99 * len(times)))]
    print(f"rows archived per run     {args.rows:,} ({len(objects)} objects, {summary.objects} written)")
    print(f"archive run               median {median:.2f} s, p99 {p99:.2f} s -> {args.rows / median:,.0f} rows/s")
    print(f"peer: logging those rows  {write_s:.2f} s -> {args.rows / write_s:,.0f} rows/s (batches of 50)")
    print(f"ratio archive / logging   {median / write_s:.2f}")
    print(f"bytes per row             log {log_bytes:,.0f} (SQLite file), archive {parquet_bytes:,.0f} (Parquet)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
