"""`make init_aws`: create the bucket and the Kinesis streams, then load clean data into the feature store.

Idempotent: existing resources are kept, and data whose content hash is already stored is not written again.
With no `--data`, a seeded generator writes realistic data in the Kaggle BankChurners schema.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from botocore.exceptions import EndpointConnectionError

from mlops import aws
from mlops.data import (
    DataError,
    clean,
    content_hash,
    read_raw,
    reference_sample,
    resolve_duplicate_ids,
    write_generated,
)
from mlops.feature_store import FeatureStore, Snapshot
from mlops.settings import ConfigurationError, Settings, load_settings
from mlops.spec import FeatureSpec, SpecError

ARTIFACT_BUCKET = "mlflow-artifacts"  # MLflow's artifact store in the compose runtime


def create_resources(settings: Settings) -> None:
    s3 = aws.client("s3", settings)
    kinesis = aws.client("kinesis", settings)
    try:
        for bucket in (settings.s3_bucket, ARTIFACT_BUCKET):
            created = aws.ensure_bucket(s3, bucket, settings.aws_region)
            print(f"bucket  {bucket:<28} {'created' if created else 'exists'}")
        for stream in (
            settings.kinesis_predictions_stream,
            settings.kinesis_results_stream,
            settings.kinesis_dead_letter_stream,
        ):
            created = aws.ensure_stream(kinesis, stream, settings.kinesis_shard_count)
            print(f"stream  {stream:<28} {'created' if created else 'exists'}")
    except EndpointConnectionError as error:
        raise aws.ServiceUnavailable(
            f"S3/Kinesis unreachable ({aws.describe_endpoint(settings)}): start the emulator "
            "(make setup-model-registry) or fix AWS_ENDPOINT_URL"
        ) from error


def latest_snapshot(settings: Settings, spec: FeatureSpec) -> Snapshot | None:
    """The snapshot LATEST names (a restored store, one built from production), or None in an empty store."""
    store = FeatureStore(aws.client("s3", settings), settings)
    return store.latest(spec.name) if store.exists(f"{spec.name}/LATEST") else None


def load_data(settings: Settings, spec: FeatureSpec, data: Path | None, rows: int, seed: int) -> Snapshot:
    if data is None:
        data = write_generated(settings.state_dir / "data" / f"{spec.name}-generated-{rows}-{seed}.csv", rows, seed)
        print(f"data    generated {rows} rows (seed {seed}) -> {data}")
    frame, removed = resolve_duplicate_ids(clean(read_raw(data), spec), spec)
    if removed:
        print(
            f"data    {removed} row(s) of repeated {spec.id_column} removed (spec: duplicate_ids={spec.duplicate_ids})"
        )
    store = FeatureStore(aws.client("s3", settings), settings)
    snapshot = Snapshot(settings.s3_bucket, spec.name, content_hash(frame))
    if store.exists(snapshot.key("train.parquet")):
        print(f"data    {snapshot.uri()} already stored ({len(frame)} rows)")
    else:
        store.put_frame(snapshot, "train.parquet", frame)
        store.put_frame(snapshot, "reference.parquet", reference_sample(frame, seed=seed))
        store.put_text(snapshot.key("spec.json"), spec.to_json())
        print(f"data    {len(frame)} clean rows, {int(frame['label'].sum())} positive -> {snapshot.uri()}")
    store.set_latest(
        snapshot,
        {
            "source": str(data),
            "rows": len(frame),
            "positive_rate": float(frame["label"].mean()),
            "spec": spec.name,
        },
    )
    return snapshot


def materialize_after(settings: Settings, spec: FeatureSpec, data_hash: str, skip: bool) -> None:
    """New data -> the online store follows (scoring by id answers from it). An unreachable online store is not a
    failure of init_aws (in compose it starts with the serving side): say so and how to catch up."""
    if skip or not spec.id_column:
        return
    from mlops.materialize import describe, materialize
    from mlops.stores.online import OnlineStoreUnavailable

    try:
        print(describe(materialize(settings, spec, data_hash)))
    except OnlineStoreUnavailable as error:
        print(f"online  not materialized: {error}; run `make materialize` once it is up", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.init_aws",
        description="Create the S3 bucket and Kinesis streams, clean the raw data and store it as features.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--data", type=Path, default=None, help="raw CSV/Parquet (default: generated data)")
    parser.add_argument("--spec", type=Path, default=None, help="feature spec (default: FEATURE_SPEC)")
    parser.add_argument("--rows", type=int, default=10_127, help="rows to generate when --data is not given")
    parser.add_argument("--seed", type=int, default=42, help="generator and sampling seed")
    parser.add_argument("--skip-resources", action="store_true", help="only load data (bucket/streams exist)")
    parser.add_argument("--skip-online", action="store_true", help="do not materialize the online store afterwards")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        spec = FeatureSpec.load(args.spec or settings.feature_spec)
        if not args.skip_resources:
            create_resources(settings)
        kept = None if args.data else latest_snapshot(settings, spec)
        if kept is not None:  # `make up` runs this every time: it must not move training back to generated data
            print(f"data    {kept.uri()} is LATEST: kept (DATA=<file> loads other data)")
        else:
            snapshot = load_data(settings, spec, args.data, args.rows, args.seed)
            materialize_after(settings, spec, snapshot.data_hash, args.skip_online)
    except (DataError, SpecError, ConfigurationError, aws.ServiceUnavailable, FileNotFoundError) as error:
        print(f"init_aws: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
