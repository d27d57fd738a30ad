"""Batch by id: score every customer of the online store, no input files needed.

    python -m batch customers OUTPUT          # folder or s3://bucket/prefix
    flow daily_batch_predictions(all_customers=True)

The online store's rows go through the record contract's frame path (`clean`, as any batch file does) and the
served model; the output is one Parquet file `<output>/<run id>/customers-<UTC time>.parquet` with the id, the
churn probability and the snapshot (data hash) each row's features came from. Read in pages, scored in blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from batch.scoring import PROBABILITY, table_bytes
from batch.storage import open_store
from mlops.contract import clean
from mlops.model import ModelBundle
from mlops.settings import Settings
from mlops.stores.base import redact
from mlops.stores.online import OnlineStore, open_online_store

BLOCK = 10_000


@dataclass
class CustomersSummary:
    run_id: str
    output: str
    rows: int
    snapshots: list[str]
    seconds: float

    def line(self) -> str:
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 and self.rows else ""
        return (
            f"batch customers model={self.run_id}: {self.rows} customers (snapshots {self.snapshots}) "
            f"-> {self.output} in {self.seconds:.1f}s{rate}"
        )


def score_customers(
    bundle: ModelBundle,
    output_uri: str,
    settings: Settings,
    store: OnlineStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> CustomersSummary:
    """Every customer of the bundle's data set in the online store -> one Parquet file under output/<run id>/."""
    spec = bundle.spec
    if not spec.id_column:
        raise ValueError(f"spec '{spec.name}' has no id column: the online store is keyed by it")
    started = time.perf_counter()
    online = store or open_online_store(settings)
    tables: list[pa.Table] = []
    snapshots: set[str] = set()
    rows = 0
    block: list[dict[str, object]] = []
    block_snapshots: list[str] = []

    def score_block() -> None:
        nonlocal rows
        if not block:
            return
        frame = clean(pd.DataFrame.from_records(block), spec, require_target=False)
        probabilities = bundle.predict_encoded(bundle.encoder.encode_frame(frame))
        tables.append(
            pa.table(
                {
                    spec.id_column: pa.array(frame[spec.id_column].astype("string"), type=pa.string()),
                    PROBABILITY: pa.array(probabilities, type=pa.float64()),
                    "snapshot": pa.array(block_snapshots, type=pa.string()),
                }
            )
        )
        rows += len(block)
        if progress is not None:
            progress(len(block))
        block.clear()
        block_snapshots.clear()

    try:
        for row in online.scan(spec.name):
            block.append({**row.features, spec.id_column: row.customer_id})
            block_snapshots.append(row.snapshot)
            snapshots.add(row.snapshot)
            if len(block) >= BLOCK:
                score_block()
        score_block()
    finally:
        if store is None:
            online.close()
    if not tables:
        raise LookupError(
            f"the online store ({redact(settings.online_store_location)}) holds no customer of '{spec.name}': "
            "run `make materialize`"
        )
    name = f"{bundle.run_id or 'model'}/customers-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.parquet"
    written = open_store(output_uri, settings).write(name, table_bytes(pa.concat_tables(tables)))
    return CustomersSummary(bundle.run_id or "", written, rows, sorted(snapshots), time.perf_counter() - started)
