"""The Kinesis stream server: `predictions` -> Scorer -> `results` (and a dead-letter stream).

Output records on `results` (partition key = request id):

    {"request_id": "...", "churn chance": 0.123, "model_run_id": "..."}

A record that is not UTF-8 JSON, has no usable request id (server.kinesis.envelope), or fails validation goes to
the dead-letter stream as {"reason", "field", "request_id" (if known), "raw" (the Data as text, or base64),
"shard_id", "sequence_number", "time"} and the consumer carries on.

Each GetRecords batch (server.kinesis.shards) is validated record by record and scored in one call; a shard's
checkpoint is saved only after the batch's results and dead letters are written and the prediction log holds it:
a restart, even after SIGKILL, resumes without loss (at-least-once; a batch in flight at the kill may be written
twice, so downstream dedupes by request id). SIGTERM finishes the batch in progress, checkpoints it and exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.contract import RecordError
from mlops.settings import Settings
from mlops.stores.ids import derived_id, utc_now_iso
from server.kinesis.checkpoints import CheckpointStore
from server.kinesis.envelope import CUSTOMER_KEY, ENVELOPES, MAX_PARTITION_KEY, EnvelopeError, parse_envelope, raw_text
from server.kinesis.leases import LeaseCheckpoints
from server.kinesis.metrics import ConsumerMetrics
from server.kinesis.shards import Shard, ShardReader
from server.kinesis.writer import PutError, put_all
from server.scoring import Scored, Scorer
from server.sinks import PredictionSink

log = logging.getLogger("serve_kinesis")

SOURCE = "kinesis"


@dataclass
class BatchOutcome:
    scored: int = 0
    dead: int = 0


@dataclass
class KinesisConsumer(ShardReader):
    """Reads every shard of `predictions`, scores each batch once, writes results, then checkpoints.

    It is its own model slot (server.scoring.ModelSlot): the service swaps in place when the registry follower,
    checked between batches, sees the alias move; there is no switch to follow per call.
    """

    settings: Settings
    service: Any  # ModelService (duck-typed: run_id, spec, predict_records)
    sinks: Sequence[PredictionSink]
    kinesis_client: Any
    checkpoints: CheckpointStore | LeaseCheckpoints | None = None
    metrics: ConsumerMetrics = field(default_factory=ConsumerMetrics)
    poll_interval_s: float = 0.2  # pause when a whole round over the shards returned nothing
    batch_limit: int | None = None  # GetRecords Limit; default settings.max_batch_records
    shard_refresh_s: float = 10.0
    online: Any = None  # OnlineStore for id-only records; default: ONLINE_STORE_URI, opened when first needed
    follower: Any = None  # RegistryFollower (RUN_ID empty): checked between batches
    shadow: Any = None  # ShadowScorer when SHADOW_MODEL is set
    put_attempts: int = 8  # PutRecords rounds before a batch counts as failed (and is re-read from its checkpoint)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _shards: dict[str, Shard] = field(default_factory=dict, init=False)
    _listed_at: float = field(default=-1e9, init=False)

    def __post_init__(self) -> None:
        self.stream = self.settings.kinesis_predictions_stream
        self.limit = min(self.batch_limit or self.settings.max_batch_records, 10_000)
        if self.checkpoints is None and self.settings.kinesis_lease_table:
            self.checkpoints = lease_checkpoints(self.settings)
        elif self.checkpoints is None:
            self.checkpoints = CheckpointStore(
                self.settings.state_dir / "kinesis-checkpoints", self.stream, self._stream_created()
            )
        self.metrics.model_info.labels(run_id=self.service.run_id).set(1)
        self.load_error: str | None = None
        self.scorer = Scorer(self, self.sinks, source=SOURCE, shadow=self.shadow)

    def follow_switch(self) -> None:
        return None

    # -------------------------------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Ask the loop to end after the batch in progress (which is then checkpointed)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Poll until stop() (or `until()` is true); pause `poll_interval_s` only when nothing came in."""
        while not self._stop.is_set() and not (until and until()):
            if self.follower is not None:
                self.follower.maybe_check()  # RUN_ID empty: a moved alias swaps the model between two batches
            read = self.poll_once()
            self.metrics.last_batch.set_to_current_time()
            if read == 0:
                self._stop.wait(self.poll_interval_s)

    def switch_model(self, run_id: str, why: str) -> None:
        """Serve `run_id` from the next batch on (the registry follower's callback)."""
        from mlops.model_service import load_bundle

        previous = self.service.run_id
        self.service.swap(load_bundle(self.settings, run_id), f"{why}; registry moved (followed)")
        self.metrics.model_info.labels(run_id=previous).set(0)
        self.metrics.model_info.labels(run_id=run_id).set(1)

    # ----------------------------------------------------------------------------------------- shards

    # -------------------------------------------------------------------------------------- one batch
    def process_batch(self, shard_id: str, records: Sequence[dict[str, Any]]) -> BatchOutcome:
        """Validate and score a GetRecords batch, write results and dead letters, feed sinks, checkpoint."""
        started = time.perf_counter()
        self.metrics.records_in.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        valid: list[dict[str, Any]] = []
        request_ids: list[str] = []
        snapshots: list[str | None] = []
        raws: list[dict[str, Any]] = []
        explains: list[int] = []  # reasons asked for, per record (the envelope's "explain")
        dead: list[tuple[bytes, str]] = []
        for raw in records:
            # each record on its own: whatever it holds, it is scored or dead-lettered, and the batch goes on
            try:
                clean, request_id, snapshot, explain = self._prepare(shard_id, raw, dead)
            except ServiceUnavailable:
                raise  # the online store is down, not the record: the batch is re-read from its checkpoint
            except Exception as error:  # a bug this record reaches: never a crash loop on one record
                log.exception("record %s of shard %s: unexpected error; dead-lettered", raw["SequenceNumber"], shard_id)
                dead.append(self._dead(shard_id, raw, "(record)", f"internal error: {_short(error)}", None, "internal"))
                continue
            if clean is not None:
                valid.append(clean)
                request_ids.append(request_id)
                snapshots.append(snapshot)
                raws.append(raw)
                explains.append(explain)
        # one call gives the probabilities and the run that made them (a hot switch may land in between otherwise)
        service = self.scorer.model()
        scored = self._score(shard_id, service, valid, [request_ids, snapshots, raws, explains], dead)
        chances, run_id, id_column = scored.probabilities, scored.run_id, scored.spec.id_column
        features = scored.spec.feature_columns
        reasons = scored.explain(explains) if any(explains) else [None] * len(explains)
        results = [
            {"request_id": rid, "churn chance": float(p), "model_run_id": run_id}
            | ({id_column: record[id_column]} if id_column and record.get(id_column) is not None else {})
            | ({"snapshot": snapshot} if snapshot is not None else {})
            | ({"missing": absent} if (absent := [f for f in features if record.get(f) is None]) else {})
            | ({"explanation": why} if why is not None else {})
            for rid, p, record, snapshot, why in zip(
                request_ids, chances, scored.records, snapshots, reasons, strict=True
            )
        ]
        if results:
            put_all(
                self.kinesis_client,
                self.settings.kinesis_results_stream,
                [(json.dumps(r).encode(), r["request_id"]) for r in results],
                attempts=self.put_attempts,
            )
        if dead:
            put_all(self.kinesis_client, self.settings.kinesis_dead_letter_stream, dead, attempts=self.put_attempts)
        # after the results are written (a failed batch is not logged), under ids a replay derives again
        self.scorer.publish(scored, request_ids, [self._prediction_id(shard_id, raw) for raw in raws])
        # the prediction log must hold this batch (written or spooled) before the checkpoint moves past it,
        # or a SIGKILL here would lose log entries the results stream already has
        for sink in self.sinks:
            wait = getattr(sink, "wait_durable", None)
            if wait is not None and not wait(30.0):
                raise PutError(f"prediction log did not persist the batch of shard {shard_id} in 30 s")
        assert self.checkpoints is not None
        self.checkpoints.save(shard_id, records[-1]["SequenceNumber"])
        self.metrics.results_out.inc(len(results))
        arrived = records[-1].get("ApproximateArrivalTimestamp")
        if arrived is not None and hasattr(arrived, "timestamp"):
            self.metrics.iterator_age.labels(shard=shard_id).set(max(0.0, time.time() - arrived.timestamp()))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return BatchOutcome(scored=len(results), dead=len(dead))

    def _prepare(
        self, shard_id: str, raw: dict[str, Any], dead: list[tuple[bytes, str]]
    ) -> tuple[dict[str, Any] | None, str, str | None, int]:
        """One record: (clean record, request id, snapshot, reasons asked for), or (None, ...) with its dead letter
        added to `dead`."""
        try:
            envelope = parse_envelope(raw["Data"], derived_request_id(shard_id, raw["SequenceNumber"]))
        except EnvelopeError as error:
            dead.append(self._dead(shard_id, raw, error.field, str(error), error.request_id, error.kind))
            return None, "", None, 0
        record, snapshot = envelope.record, None
        if envelope.customer_id is not None:
            row = self._online_row(envelope.customer_id)  # a dead store: ServiceUnavailable, batch retried
            if row is None:
                reason = (
                    f"field '{CUSTOMER_KEY}': unknown customer {envelope.customer_id!r}: not in the online store "
                    "(run `make materialize` after loading new data)"
                )
                dead.append(self._dead(shard_id, raw, CUSTOMER_KEY, reason, envelope.request_id, "unknown_customer"))
                return None, "", None, 0
            id_column = self.service.spec.id_column
            record = {**row.features, **({id_column: row.customer_id} if id_column else {})}
            snapshot = row.snapshot
        try:
            clean = self.service.check(record)
        except RecordError as error:
            dead.append(self._dead(shard_id, raw, error.field, str(error), envelope.request_id, "record"))
            return None, "", None, 0
        return clean, envelope.request_id, snapshot, envelope.explain

    def _score(
        self,
        shard_id: str,
        service: Any,
        valid: list[dict[str, Any]],
        beside: list[list[Any]],
        dead: list[tuple[bytes, str]],
    ) -> Scored:
        """The batch scored in one call; if that fails, record by record, and a record that fails alone is a dead
        letter (`valid` and the lists `beside` it, [request ids, snapshots, raws, explains], are trimmed to the
        records that were scored)."""
        request_ids, raws = beside[0], beside[2]
        if not valid:
            return Scored([], np.empty(0), service.run_id, service.spec, service.bundle)
        try:
            return self.scorer.predict(service, valid)
        except ServiceUnavailable:
            raise
        except Exception:
            log.exception(
                "scoring a batch of %d record(s) of shard %s failed; scoring one by one", len(valid), shard_id
            )
        kept: list[int] = []
        chances: list[float] = []
        for i, record in enumerate(valid):
            try:
                chances.append(float(self.scorer.predict(service, [record]).probabilities[0]))
            except Exception as error:
                reason = f"internal error while scoring: {_short(error)}"
                dead.append(self._dead(shard_id, raws[i], "(record)", reason, request_ids[i], "internal"))
                continue
            kept.append(i)
        for column in (valid, *beside):
            column[:] = [column[i] for i in kept]
        return Scored(valid, np.asarray(chances, dtype=float), service.run_id, service.spec, service.bundle)

    def _prediction_id(self, shard_id: str, raw: dict[str, Any]) -> str:
        """The record's prediction id, the same on every read of it (arrival time + shard and sequence number)."""
        arrived = raw.get("ApproximateArrivalTimestamp")
        millis = int(arrived.timestamp() * 1000) if hasattr(arrived, "timestamp") else 0
        return derived_id(millis, f"{self.stream}/{shard_id}/{raw['SequenceNumber']}")

    def _dead(
        self, shard_id: str, raw: dict[str, Any], field_name: str, reason: str, request_id: str | None, kind: str
    ) -> tuple[bytes, str]:
        self.metrics.dead_letters.labels(field=self._metric_field(field_name), reason=kind).inc()
        return self._dead_letter(shard_id, raw, field_name, reason, request_id)

    def _metric_field(self, name: str) -> str:
        """Sender-chosen names (unknown fields) would make label values unbounded: fold them into "(other)"."""
        known = {*self.service.spec.feature_columns, "(data)", "(envelope)", "(record)"} | {
            k for pair in ENVELOPES for k in pair
        }
        return name if name in known else "(other)"

    def _online_row(self, customer_id: str) -> Any:
        """The customer's row in the online store (None: unknown); the store is opened on the first id-only record."""
        from mlops.stores.online import OnlineStoreUnavailable, open_online_store

        try:
            if self.online is None:
                self.online = open_online_store(self.settings)
            return self.online.get(self.service.spec.name, customer_id)
        except OnlineStoreUnavailable as error:
            raise ServiceUnavailable(str(error)) from error

    def _dead_letter(
        self, shard_id: str, raw: dict[str, Any], field_name: str, reason: str, request_id: str | None
    ) -> tuple[bytes, str]:
        text, encoding = raw_text(raw["Data"])
        letter = {
            "reason": reason,
            "field": field_name,
            "request_id": request_id,
            "raw": text,
            "raw_encoding": encoding,
            "stream": self.stream,
            "shard_id": shard_id,
            "sequence_number": raw["SequenceNumber"],
            "time": utc_now_iso(),
        }
        key = request_id or raw.get("PartitionKey") or raw["SequenceNumber"]
        return json.dumps(letter).encode(), str(key)[:MAX_PARTITION_KEY]


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"


def lease_checkpoints(settings: Settings) -> Any:
    """The group's checkpoints in the DynamoDB lease table KINESIS_LEASE_TABLE (created if missing)."""
    import os
    import socket

    from server.kinesis.leases import LeaseCoordinator, LeaseTable

    table = LeaseTable(aws.client("dynamodb", settings), str(settings.kinesis_lease_table))
    try:
        table.ensure()
    except Exception as error:  # botocore's errors: the consumer cannot join its group
        raise ServiceUnavailable(
            f"DynamoDB lease table {settings.kinesis_lease_table} (KINESIS_LEASE_TABLE) is unreachable at "
            f"{aws.describe_endpoint(settings)}: {error}"
        ) from error
    worker = settings.kinesis_worker_id or f"{socket.gethostname()}-{os.getpid()}"
    return LeaseCheckpoints(LeaseCoordinator(table, worker, settings.kinesis_lease_timeout_s))


def derived_request_id(shard_id: str, sequence_number: str) -> str:
    """The request id of a record that brings none: deterministic, so a re-read batch logs the same prediction."""
    return f"{shard_id}:{sequence_number}"[:MAX_PARTITION_KEY]
