"""Training data from production: settled predictions (the logged input and the observed outcome) become a new
feature-store snapshot, so a retraining learns from the data that drifted, not from the snapshot it already saw.

    make snapshot-from-production      # or: python -m mlops.production_data [--min-rows N]

Rows: the newest RETRAIN_MAX_PRODUCTION_ROWS settled live predictions, from the prediction log first, then from
the archive (mlops.archive; newest days first, only the days needed). Each customer counts once, with its newest
outcome; it replaces that customer's row of the current snapshot, whose other rows stay. The result is a snapshot
like any other (train, reference, spec; LATEST points at it): its hash is its content's, so building it twice from
the same rows gives the same snapshot, and a model trained on it is recognised as having seen it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops import aws
from mlops.data import content_hash, reference_sample
from mlops.feature_store import FeatureStore, Snapshot
from mlops.settings import ConfigurationError, Settings, load_settings
from mlops.spec import FeatureSpec
from mlops.stores.outcomes import open_outcome_store

LABEL = "label"


@dataclass(frozen=True)
class Built:
    snapshot: Snapshot  # LATEST after the call: the new snapshot, or the current one when nothing was built
    new: bool
    production_rows: int
    note: str  # what happened, for a person (the trigger records it)


def _archived_records(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """Settled predictions from the archive, newest days first, until `limit` (only those days' objects read)."""
    from mlops.archive import archived_days, read_archive

    found: list[pd.DataFrame] = []
    for day in reversed(archived_days(settings, "settlements")):
        settled = read_archive(settings, "settlements", day)
        predicted = read_archive(settings, "predictions", day)
        if predicted.empty:
            continue
        settled = settled[settled["source"] != "shadow"]
        found.append(settled[["prediction_id", "label", "predicted_at"]].merge(
            predicted[["prediction_id", "input", "customer_id"]], on="prediction_id"
        ))  # fmt: skip
        if sum(len(f) for f in found) >= limit:
            break
    if not found:
        return []
    rows = pd.concat(found, ignore_index=True).sort_values("predicted_at").tail(limit)
    return [
        {
            "input": json.loads(r.input),
            "label": int(r.label),
            "customer_id": r.customer_id,
            "predicted_at": r.predicted_at,
        }
        for r in rows.itertuples()
    ]


def production_frame(settings: Settings, spec: FeatureSpec, columns: pd.Series) -> pd.DataFrame:
    """The settled production rows as clean training rows (the snapshot's columns and dtypes), one per customer."""
    limit = settings.retrain_max_production_rows
    store = open_outcome_store(settings)
    try:
        records = store.settled_records(limit)
    finally:
        store.close()
    if len(records) < limit:
        records = _archived_records(settings, limit - len(records)) + records
    if not records:
        return pd.DataFrame(columns=list(columns.index)).astype(columns.to_dict())
    frame = pd.DataFrame([r["input"] for r in records])
    frame[LABEL] = [r["label"] for r in records]
    if spec.id_column:
        frame[spec.id_column] = [r["customer_id"] for r in records]
    frame["_at"] = [str(r["predicted_at"]) for r in records]
    frame = frame.sort_values("_at", kind="stable").drop(columns="_at")
    if spec.id_column:  # a customer's newest outcome; rows without an id are kept (exact repeats once)
        known = frame[frame[spec.id_column].notna()].drop_duplicates(spec.id_column, keep="last")
        frame = pd.concat([known, frame[frame[spec.id_column].isna()].drop_duplicates()])
    for column in columns.index:
        if column not in frame:
            frame[column] = None
    return frame[list(columns.index)].astype(columns.to_dict()).reset_index(drop=True)


def snapshot_from_production(
    settings: Settings, spec: FeatureSpec, min_rows: int | None = None, say: Callable[[str], None] = print
) -> Built:
    """A new snapshot (base rows + production rows) when there are at least `min_rows` settled production rows
    (default RETRAIN_MIN_PRODUCTION_ROWS); else the current one, with the reason."""
    needed = settings.retrain_min_production_rows if min_rows is None else min_rows
    store = FeatureStore(aws.client("s3", settings), settings)
    current = store.latest(spec.name)
    base = store.get_frame(current, "train.parquet")
    production = production_frame(settings, spec, base.dtypes)
    if len(production) < needed:
        note = (
            f"fell back to the current snapshot {current.data_hash}: {len(production)} settled production rows "
            f"< RETRAIN_MIN_PRODUCTION_ROWS {needed}"
        )
        return Built(current, False, len(production), note)
    if spec.id_column:
        base = base[~base[spec.id_column].isin(set(production[spec.id_column].dropna()))]
    frame = pd.concat([base, production], ignore_index=True)
    snapshot = Snapshot(settings.s3_bucket, spec.name, content_hash(frame))
    if snapshot.data_hash == current.data_hash:
        return Built(
            current,
            False,
            len(production),
            f"the {len(production)} settled production rows are already in snapshot {current.data_hash}",
        )
    if not store.exists(snapshot.key("train.parquet")):
        store.put_frame(snapshot, "train.parquet", frame)
        store.put_frame(snapshot, "reference.parquet", reference_sample(frame, seed=settings.seed))
        store.put_text(snapshot.key("spec.json"), spec.to_json())
    meta = {"source": f"production: {len(production)} settled rows + {len(base)} rows of {current.data_hash}"}
    store.set_latest(
        snapshot, meta | {"rows": len(frame), "positive_rate": float(frame[LABEL].mean()), "spec": spec.name}
    )
    rows = f"{len(production)} settled production rows + {len(base)} of {current.data_hash}"
    note = f"new snapshot {snapshot.data_hash}: {rows}"
    say(f"data    {note} -> {snapshot.uri()}")
    return Built(snapshot, True, len(production), note)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.production_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--min-rows", type=int, default=None, help="default: RETRAIN_MIN_PRODUCTION_ROWS")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        built = snapshot_from_production(settings, FeatureSpec.load(settings.feature_spec), args.min_rows)
    except (ConfigurationError, aws.ServiceUnavailable, FileNotFoundError) as error:
        print(f"snapshot-from-production: error: {error}", file=sys.stderr)
        return 1
    print(f"snapshot-from-production: {built.note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
