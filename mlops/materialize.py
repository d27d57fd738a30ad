"""`make materialize`: copy the latest feature row of every customer from the S3 feature store to the online store.

    python -m mlops.materialize                   # the newest snapshot of the spec's data set
    python -m mlops.materialize --snapshot 3f2a…  # a given data hash

The rows are the snapshot's clean `train.parquet` (ids unique: `make init_aws` resolved repeats by the spec's
`duplicate_ids`), feature columns only, typed as the record contract returns them, so a by-id answer and a
full-record answer go through the same validator to the same probability. Idempotent: an unchanged row is not
rewritten; each run records its snapshot, rows and changed rows. `make init_aws` runs it after loading data; the
batch deployment process also runs it every MATERIALIZE_INTERVAL_HOURS (flow `materialize_online_store`).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mlops import aws
from mlops.feature_store import FeatureStore
from mlops.settings import ConfigurationError, Settings, load_settings
from mlops.spec import FeatureSpec, SpecError
from mlops.stores.base import redact
from mlops.stores.online import OnlineStoreUnavailable, open_online_store
from mlops.stores.quarantine import Quarantine, keep_refused, quarantine_dir, write_isolating

log = logging.getLogger(__name__)


def feature_rows(frame: pd.DataFrame, spec: FeatureSpec) -> list[tuple[str, dict[str, Any]]]:
    """Clean frame -> (customer id, {feature: JSON value}) per row that has an id; NaN -> None, ints as ints."""
    if not spec.id_column or spec.id_column not in frame.columns:
        raise ValueError(f"spec '{spec.name}' has no id column in this data: nothing to key the online store by")
    ints = {c for c, f in spec.numeric.items() if f.type == "int"}
    columns = spec.feature_columns
    rows: list[tuple[str, dict[str, Any]]] = []
    for identifier, *values in frame[[spec.id_column, *columns]].itertuples(index=False, name=None):
        if identifier is None or identifier is pd.NA or (isinstance(identifier, float) and math.isnan(identifier)):
            continue
        features: dict[str, Any] = {}
        for column, value in zip(columns, values, strict=True):
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                features[column] = None
            elif column in spec.numeric:
                features[column] = int(value) if column in ints else float(value)
            else:
                features[column] = str(value)
        rows.append((str(identifier), features))
    return rows


def materialize(settings: Settings, spec: FeatureSpec, data_hash: str | None = None) -> dict[str, Any]:
    """Latest (or `data_hash`) snapshot -> online store. Returns what was done; raises OnlineStoreUnavailable,
    ServiceUnavailable (S3) or FileNotFoundError (no snapshot)."""
    started = time.perf_counter()
    offline = FeatureStore(aws.client("s3", settings), settings)
    snapshot = offline.resolve(spec.name, data_hash)
    rows = feature_rows(offline.get_frame(snapshot, "train.parquet"), spec)
    store = open_online_store(settings)
    changed = 0

    def write(part: list[dict[str, Any]]) -> None:
        nonlocal changed
        changed += store.write(spec.name, [(e["customer_id"], e["features"]) for e in part], snapshot.data_hash)

    try:
        # a row the store refuses for its content is quarantined (STATE_DIR/quarantine/online); the rest is written
        entries = [{"customer_id": i, "features": f, "dataset": spec.name, "snapshot": snapshot.data_hash}
                   for i, f in rows]  # fmt: skip
        refused, unwritten = write_isolating(write, entries)
        if unwritten:
            raise OnlineStoreUnavailable(f"the online store went down with {len(unwritten)} row(s) not written")
        quarantine = Quarantine(quarantine_dir(settings.state_dir, "online"), settings.quarantine_max_bytes)
        keep_refused(quarantine, refused, log, "online row(s)")
    finally:
        store.close()
    return {
        "dataset": spec.name,
        "snapshot": snapshot.data_hash,
        "source": snapshot.uri("train.parquet"),
        "rows": len(rows),
        "changed": changed,
        "refused": len(refused),
        "online_store": redact(settings.online_store_location),
        "seconds": round(time.perf_counter() - started, 2),
    }


def describe(result: dict[str, Any]) -> str:
    return (
        f"online  {result['rows']} customers of {result['source']} -> {result['online_store']} "
        f"({result['changed']} changed, {result['seconds']:g} s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.materialize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--snapshot", default=None, help="data hash of the snapshot (default: the newest)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        spec = FeatureSpec.load(settings.feature_spec)
        print(describe(materialize(settings, spec, args.snapshot)), flush=True)
    except (ConfigurationError, SpecError, OnlineStoreUnavailable, aws.ServiceUnavailable, ValueError) as error:
        print(f"materialize: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"materialize: error: {error}; run `make init_aws` first", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
