"""One batch run, whatever the engine: list inputs, skip what this model already scored, score the rest, record it.

The engine only turns blocks of files into per-file records; listing, idempotence (the manifest), the rejects
list and the summary live here, so the embedded and the Spark engine behave the same from the outside.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from batch import manifest
from batch.engine import Job, default_workers, plan_blocks, run_embedded, warm_up_helpers
from batch.scoring import ModelPayload, parse_aggregates
from batch.storage import open_store
from mlops.explain import ExplainError, explain_count
from mlops.model import ModelBundle
from mlops.settings import Settings

Engine = Literal["embedded", "spark"]
MANIFEST_FLUSH_FILES = 5000
Progress = Callable[[int, int], None]  # (files finished in this update, rows scored in this update)


@dataclass
class BatchSummary:
    run_id: str
    input_uri: str
    output_uri: str
    engine: str
    total: int = 0
    skipped: int = 0
    scored: int = 0
    rows: int = 0
    seconds: float = 0.0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    manifest_part: str | None = None
    rejects_part: str | None = None

    @property
    def rejected(self) -> int:
        return len(self.rejects)

    @property
    def exit_code(self) -> int:
        """Non-zero when any file was rejected: the run finished, but not everything was scored."""
        return 1 if self.rejects else 0

    def line(self) -> str:
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 and self.rows else ""
        return (
            f"batch {self.engine} model={self.run_id}: scored={self.scored} skipped={self.skipped} "
            f"rejected={self.rejected} rows={self.rows} in {self.seconds:.1f}s{rate}"
        )


def _explain_count(value: int | str, n_features: int) -> int:
    try:
        return explain_count(value, n_features)
    except ExplainError as error:
        raise ValueError(f"--explain: {error}") from None


def run_batch(
    input_uri: str,
    output_uri: str,
    bundle: ModelBundle,
    *,
    settings: Settings | None = None,
    engine: Engine = "embedded",
    workers: int | None = None,
    aggregates: Sequence[str] = (),
    explain: int | str = 0,
    run_id: str | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    spark: Any | None = None,
    known_rejects: dict[str, str] | None = None,
) -> BatchSummary:
    """Score every input file not yet scored by this model; returns the summary (rejects included).

    `on_plan(to_score, skipped)` is called once the work is known (for a progress bar); `progress` after each block.
    `spark` is an existing SparkSession for engine="spark" (else one is created and stopped).
    `known_rejects` ({name: fingerprint}) are skipped too: a watcher retries a bad file only once it changes.
    """
    started = time.perf_counter()
    workers = workers or default_workers()
    if engine == "embedded":
        warm_up_helpers(workers)
    payload = ModelPayload.from_bundle(bundle, run_id)
    job = Job(
        payload,
        str(input_uri),
        str(output_uri),
        settings,
        tuple(parse_aggregates(aggregates, bundle.spec)),
        _explain_count(explain, len(bundle.spec.feature_columns)),
    )
    summary = BatchSummary(payload.run_id, job.input_uri, job.output_uri, engine)
    source, sink = open_store(job.input_uri, settings), open_store(job.output_uri, settings)

    files = source.list()
    done = manifest.done_fingerprints(sink, payload.run_id)
    known = known_rejects or {}
    todo = [f for f in files if f.fingerprint not in (done.get(f.name), known.get(f.name))]
    summary.total, summary.skipped = len(files), len(files) - len(todo)
    if on_plan:
        on_plan(len(todo), summary.skipped)

    blocks = plan_blocks(todo, workers)
    if engine == "spark":
        from batch.spark_engine import run_spark  # pyspark is imported only when asked for

        results = run_spark(job, blocks, spark=spark)
    elif engine == "embedded":
        results = run_embedded(job, blocks, workers, bundle=bundle)
    else:
        raise ValueError(f"unknown engine {engine!r}; expected 'embedded' or 'spark'")

    stamp = manifest.run_stamp()
    pending: list[dict[str, Any]] = []  # scored but not yet in a manifest part
    parts = 0

    def flush() -> None:
        nonlocal pending, parts
        if pending:
            summary.manifest_part = manifest.write_part(
                sink, payload.run_id, manifest.MANIFEST_DIR, f"{stamp}-{parts:05d}", pending
            )
            parts += 1
            pending = []

    for records in results:
        rows = 0
        for record in records:
            if record["status"] == "scored":
                pending.append(record)
                summary.scored += 1
                rows += record["rows"]
            else:
                summary.rejects.append(record)
        summary.rows += rows
        if len(pending) >= MANIFEST_FLUSH_FILES:  # a crash loses at most this much bookkeeping, never outputs
            flush()
        if progress:
            progress(len(records), rows)
    flush()
    summary.rejects_part = manifest.write_part(sink, payload.run_id, manifest.REJECTS_DIR, stamp, summary.rejects)
    summary.seconds = time.perf_counter() - started
    return summary
