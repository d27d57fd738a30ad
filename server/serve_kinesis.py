"""The Kinesis stream server: `predictions` -> ModelService -> `results` (and a dead-letter stream).

Input records (the envelope; UTF-8 JSON in the Kinesis record's Data):

    {"request_id": "<1-256 chars, or an integer>", "record": {<one record as POST /predict takes it>}}

The shape of the original design is also accepted: {"customer_id": ..., "customer": {...}}, with customer_id
as the request id. Output records on `results` (partition key = request id):

    {"request_id": "...", "churn chance": 0.123, "model_run_id": "..."}

A record that is not UTF-8 JSON, has no usable request id, or fails validation goes to the dead-letter
stream as {"reason", "field", "request_id" (if known), "raw" (the Data as text, or base64), "shard_id",
"sequence_number", "time"} and the consumer carries on.

Every shard is read (shards that appear after a reshard too, children only once their parents are finished),
each GetRecords batch is validated and scored in one `predict_records` call, and a shard's checkpoint is
saved only after the batch's results and dead letters are written: a restart, even after SIGKILL, resumes
without loss (at-least-once; a batch in flight at the kill may be written twice, so downstream dedupes by
request id). SIGTERM finishes the batch in progress, checkpoints it and exits.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.contract import RecordError
from mlops.prediction_log import make_entry, utc_now_iso
from mlops.settings import ConfigurationError, Settings, load_settings
from server.checkpoints import CheckpointStore
from server.sinks import PredictionSink

log = logging.getLogger("serve_kinesis")

SOURCE = "kinesis"
MAX_PARTITION_KEY = 256  # Kinesis' limit on a partition key, which the request id becomes
PUT_RECORDS_MAX = 500  # Kinesis' limit of entries per PutRecords call
ENVELOPES = (
    ("request_id", "record"),
    ("customer_id", "customer"),
)  # (id key, record key), first is the documented
CUSTOMER_KEY = "customer_id"  # with "request_id" and no record: the customer's features from the online store


# ------------------------------------------------------------------------------------------ envelope
@dataclass(frozen=True)
class Envelope:
    request_id: str
    record: Any
    customer_id: str | None = None  # {"request_id", "customer_id"} and no record: score from the online store


@dataclass(frozen=True)
class EnvelopeError(ValueError):
    """The record cannot be scored: `field` names what is wrong; `request_id` is kept if it was read."""

    field: str
    reason: str
    request_id: str | None = None

    def __str__(self) -> str:
        return f"field '{self.field}': {self.reason}"


def parse_envelope(data: bytes) -> Envelope:
    """Decode one Kinesis record's Data into (request id, record); raise EnvelopeError saying why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EnvelopeError("(data)", f"not UTF-8 text: {error.reason} at byte {error.start}") from error
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise EnvelopeError("(data)", f"not JSON: {error.msg} at character {error.pos}") from error
    if not isinstance(body, dict):
        raise EnvelopeError("(envelope)", f"must be a JSON object, got {type(body).__name__}")
    for id_key, record_key in ENVELOPES:
        if id_key in body or record_key in body:
            break
    else:
        raise EnvelopeError(
            "request_id",
            'missing; expected {"request_id": "...", "record": {...}} (or "customer_id"/"customer")',
        )
    by_id = id_key == "request_id" and CUSTOMER_KEY in body and record_key not in body
    allowed = {id_key, CUSTOMER_KEY} if by_id else {id_key, record_key}
    unknown = sorted(set(body) - allowed)
    if unknown:
        expected = f"'{id_key}' and '{record_key}' (or '{CUSTOMER_KEY}' instead of '{record_key}')"
        raise EnvelopeError(unknown[0], f"unknown envelope field; expected only {expected}")
    request_id = _request_id(body.get(id_key), id_key)
    if by_id:
        return Envelope(request_id, None, _customer_id(body[CUSTOMER_KEY], request_id))
    if record_key not in body:
        raise EnvelopeError(
            record_key, f"missing (or send '{CUSTOMER_KEY}' to score from the online store)", request_id
        )
    return Envelope(request_id, body[record_key])


def _customer_id(value: Any, request_id: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise EnvelopeError(CUSTOMER_KEY, "must be a non-empty string or an integer", request_id)
    text = str(value).strip()
    if len(text) > 128:
        raise EnvelopeError(CUSTOMER_KEY, "must be at most 128 characters", request_id)
    return text


def _request_id(value: Any, key: str) -> str:
    if value is None:
        raise EnvelopeError(key, "missing (every record needs a request id: it keys the result)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EnvelopeError(key, f"must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise EnvelopeError(key, "must not be empty")
    if len(text) > MAX_PARTITION_KEY:
        raise EnvelopeError(key, f"must be at most {MAX_PARTITION_KEY} characters (it is the partition key)")
    return text


def raw_text(data: bytes) -> tuple[str, str]:
    """The raw Data for a dead letter: (text, "utf-8") when it decodes, else (base64, "base64")."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


# ------------------------------------------------------------------------------------------- metrics
class ConsumerMetrics:
    """The consumer's Prometheus metrics, in their own registry (served on KINESIS_METRICS_PORT)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("kinesis_records_in", "Records read from the predictions stream", registry=r)
        self.results_out = Counter("kinesis_results_out", "Results written to the results stream", registry=r)
        self.dead_letters = Counter(
            "kinesis_dead_letters", "Records sent to the dead-letter stream", ["field"], registry=r
        )
        self.batch_seconds = Histogram(
            "kinesis_batch_seconds",
            "Time to validate, score and write one GetRecords batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "kinesis_batch_records",
            "Records per GetRecords batch",
            buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
            registry=r,
        )
        self.lag = Gauge(
            "kinesis_millis_behind_latest", "MillisBehindLatest of the last GetRecords", ["shard"], registry=r
        )
        self.batch_failures = Counter(
            "kinesis_batch_failures",
            "Batches whose output could not be written (retried from the checkpoint)",
            registry=r,
        )
        self.shards = Gauge("kinesis_shards_active", "Shards being read", registry=r)
        self.model_info = Gauge("kinesis_model_info", "The model that scores", ["run_id"], registry=r)


# ------------------------------------------------------------------------------------------- writing
class PutError(RuntimeError):
    """Records could not be written to a stream after retries; the batch is not checkpointed."""


def put_all(
    client: Any,
    stream: str,
    entries: Sequence[tuple[bytes, str]],
    attempts: int = 8,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """PutRecords every (data, partition key), retrying failed entries (partial failures, throttling)."""
    pending = list(entries)
    last_error = ""
    for attempt in range(attempts):
        failed: list[tuple[bytes, str]] = []
        for start in range(0, len(pending), PUT_RECORDS_MAX):
            chunk = pending[start : start + PUT_RECORDS_MAX]
            try:
                response = client.put_records(
                    StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in chunk]
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException":
                    raise PutError(f"stream '{stream}' does not exist; run `make init_aws`") from error
                last_error = code or str(error)
                failed.extend(chunk)
                continue
            except (EndpointConnectionError, BotoCoreError) as error:
                last_error = str(error)
                failed.extend(chunk)
                continue
            for entry, result in zip(chunk, response["Records"], strict=True):
                if "ErrorCode" in result:
                    last_error = f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
                    failed.append(entry)
        if not failed:
            return
        pending = failed
        if attempt + 1 < attempts:
            sleep(min(backoff_s * 2**attempt, 2.0))
    raise PutError(f"{len(pending)} record(s) not written to stream '{stream}' after {attempts} attempts: {last_error}")


# ------------------------------------------------------------------------------------------ consumer
@dataclass
class BatchOutcome:
    scored: int = 0
    dead: int = 0


@dataclass
class _Shard:
    shard_id: str
    parents: tuple[str, ...] = ()
    iterator: str | None = None
    closed: bool = False
    retry_at: float = 0.0  # monotonic time before which the shard is not read (after a failure)


@dataclass
class KinesisConsumer:
    """Reads every shard of `predictions`, scores each batch once, writes results, then checkpoints."""

    settings: Settings
    service: Any  # ModelService (duck-typed: run_id, spec, predict_records)
    sinks: Sequence[PredictionSink]
    kinesis_client: Any
    checkpoints: CheckpointStore | None = None
    metrics: ConsumerMetrics = field(default_factory=ConsumerMetrics)
    poll_interval_s: float = 0.2  # pause when a whole round over the shards returned nothing
    batch_limit: int | None = None  # GetRecords Limit; default settings.max_batch_records
    shard_refresh_s: float = 10.0
    online: Any = None  # OnlineStore for id-only records; default: ONLINE_STORE_URI, opened when first needed
    follower: Any = None  # RegistryFollower (RUN_ID empty): checked between batches
    shadow: Any = None  # ShadowScorer when SHADOW_MODEL is set
    put_attempts: int = 8  # PutRecords rounds before a batch counts as failed (and is re-read from its checkpoint)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _shards: dict[str, _Shard] = field(default_factory=dict, init=False)
    _listed_at: float = field(default=-1e9, init=False)

    def __post_init__(self) -> None:
        self.stream = self.settings.kinesis_predictions_stream
        self.limit = min(self.batch_limit or self.settings.max_batch_records, 10_000)
        if self.checkpoints is None:
            self.checkpoints = CheckpointStore(
                self.settings.state_dir / "kinesis-checkpoints", self.stream, self._stream_created()
            )
        self.metrics.model_info.labels(run_id=self.service.run_id).set(1)

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
            if self.poll_once() == 0:
                self._stop.wait(self.poll_interval_s)

    def switch_model(self, run_id: str, why: str) -> None:
        """Serve `run_id` from the next batch on (the registry follower's callback)."""
        from server.model_service import load_bundle

        previous = self.service.run_id
        self.service.swap(load_bundle(self.settings, run_id), f"{why}; registry moved (followed)")
        self.metrics.model_info.labels(run_id=previous).set(0)
        self.metrics.model_info.labels(run_id=run_id).set(1)

    # ----------------------------------------------------------------------------------------- shards
    def _stream_created(self) -> str | None:
        try:
            summary = self.kinesis_client.describe_stream_summary(StreamName=self.stream)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ServiceUnavailable(
                    f"Kinesis stream '{self.stream}' does not exist (setting KINESIS_PREDICTIONS_STREAM); "
                    "create it with `make init_aws`"
                ) from error
            raise
        created = summary["StreamDescriptionSummary"].get("StreamCreationTimestamp")
        return created.isoformat() if isinstance(created, datetime) else (str(created) if created else None)

    def refresh_shards(self) -> list[str]:
        """List the stream's shards (all pages); new ones join, checkpointed-closed ones are skipped."""
        listed: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = self.kinesis_client.list_shards(**kwargs)
            listed.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        assert self.checkpoints is not None
        for shard in listed:
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
            self._shards[shard_id] = _Shard(shard_id, parents, closed=self.checkpoints.get(shard_id).closed)
            log.info("shard %s joined (parents %s)", shard_id, list(parents) or "none")
        self._listed_at = time.monotonic()
        self.metrics.shards.set(sum(1 for s in self._shards.values() if not s.closed))
        return [s.shard_id for s in self._shards.values()]

    def _readable(self, shard: _Shard) -> bool:
        """A child shard waits until every parent we know of has been read to its end (order per key)."""
        if shard.closed or time.monotonic() < shard.retry_at:
            return False
        return all(self._shards[p].closed for p in shard.parents if p in self._shards)

    def _iterator(self, shard: _Shard) -> str:
        assert self.checkpoints is not None
        checkpoint = self.checkpoints.get(shard.shard_id)
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard.shard_id}
        if checkpoint.sequence_number:
            kwargs |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": checkpoint.sequence_number,
            }
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        try:
            return self.kinesis_client.get_shard_iterator(**kwargs)["ShardIterator"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "InvalidArgumentException" or "Starting" not in kwargs:
                raise
            log.warning(
                "checkpoint of shard %s is not valid any more (%s): reading from the oldest record",
                shard.shard_id,
                error,
            )
            kwargs = {
                "StreamName": self.stream,
                "ShardId": shard.shard_id,
                "ShardIteratorType": "TRIM_HORIZON",
            }
            return self.kinesis_client.get_shard_iterator(**kwargs)["ShardIterator"]

    # ---------------------------------------------------------------------------------------- polling
    def poll_once(self) -> int:
        """One round over the readable shards: one GetRecords and one scored batch each; records read."""
        if time.monotonic() - self._listed_at > self.shard_refresh_s:
            self.refresh_shards()
        total = 0
        for shard in list(self._shards.values()):
            if self._stop.is_set():
                break
            if not self._readable(shard):
                continue
            try:
                total += self._poll_shard(shard)
            except (
                PutError,
                ServiceUnavailable,
                EndpointConnectionError,
                BotoCoreError,
                ClientError,
            ) as error:
                # Nothing of this batch is checkpointed: read it again from the checkpoint after a pause.
                self.metrics.batch_failures.inc()
                log.error("shard %s: batch not completed, will retry from its checkpoint: %s", shard.shard_id, error)
                shard.iterator = None
                shard.retry_at = time.monotonic() + 2.0
        return total

    def _poll_shard(self, shard: _Shard) -> int:
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            response = self.kinesis_client.get_records(ShardIterator=shard.iterator, Limit=self.limit)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                shard.iterator = None
                return 0
            if code == "ProvisionedThroughputExceededException":
                shard.retry_at = time.monotonic() + 1.0
                return 0
            raise
        records = response.get("Records", [])
        if "MillisBehindLatest" in response:
            self.metrics.lag.labels(shard=shard.shard_id).set(response["MillisBehindLatest"])
        if records:
            self.process_batch(shard.shard_id, records)
        next_iterator = response.get("NextShardIterator")
        shard.iterator = next_iterator
        if next_iterator is None:  # the shard was closed by a reshard and is read to its end
            assert self.checkpoints is not None
            self.checkpoints.save(shard.shard_id, None, closed=True)
            shard.closed = True
            log.info("shard %s read to its end", shard.shard_id)
            self._listed_at = -1e9  # children may now be listed
        return len(records)

    # -------------------------------------------------------------------------------------- one batch
    def process_batch(self, shard_id: str, records: Sequence[dict[str, Any]]) -> BatchOutcome:
        """Validate and score a GetRecords batch, write results and dead letters, feed sinks, checkpoint."""
        started = time.perf_counter()
        self.metrics.records_in.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        valid: list[dict[str, Any]] = []
        request_ids: list[str] = []
        snapshots: list[str | None] = []
        dead: list[tuple[bytes, str]] = []
        for raw in records:
            try:
                envelope = parse_envelope(raw["Data"])
            except EnvelopeError as error:
                dead.append(self._dead_letter(shard_id, raw, error.field, str(error), error.request_id))
                self.metrics.dead_letters.labels(field=self._metric_field(error.field)).inc()
                continue
            record, snapshot = envelope.record, None
            if envelope.customer_id is not None:
                row = self._online_row(envelope.customer_id)  # a dead store: ServiceUnavailable, batch retried
                if row is None:
                    reason = (
                        f"field '{CUSTOMER_KEY}': unknown customer {envelope.customer_id!r}: not in the online store "
                        "(run `make materialize` after loading new data)"
                    )
                    dead.append(self._dead_letter(shard_id, raw, CUSTOMER_KEY, reason, envelope.request_id))
                    self.metrics.dead_letters.labels(field=CUSTOMER_KEY).inc()
                    continue
                id_column = self.service.spec.id_column
                record = {**row.features, **({id_column: row.customer_id} if id_column else {})}
                snapshot = row.snapshot
            try:
                clean = self.service.check(record)
            except RecordError as error:
                dead.append(self._dead_letter(shard_id, raw, error.field, str(error), envelope.request_id))
                self.metrics.dead_letters.labels(field=self._metric_field(error.field)).inc()
                continue
            valid.append(clean)
            request_ids.append(envelope.request_id)
            snapshots.append(snapshot)
        # one call gives the probabilities and the run that made them (a hot switch may land in between otherwise)
        chances, run_id = self.service.predict_with_run(valid) if valid else ([], self.service.run_id)
        id_column = self.service.spec.id_column
        results = [
            {"request_id": rid, "churn chance": float(p), "model_run_id": run_id}
            | ({id_column: record[id_column]} if id_column and record.get(id_column) is not None else {})
            | ({"snapshot": snapshot} if snapshot is not None else {})
            for rid, p, record, snapshot in zip(request_ids, chances, valid, snapshots, strict=True)
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
        self._feed_sinks(valid, results)
        if self.shadow is not None and valid:
            self.shadow.submit(valid, request_ids)  # enqueued only: results never wait for the shadow
        # the prediction log must hold this batch (written or spooled) before the checkpoint moves past it,
        # or a SIGKILL here would lose log entries the results stream already has
        for sink in self.sinks:
            wait = getattr(sink, "wait_durable", None)
            if wait is not None and not wait(30.0):
                raise PutError(f"prediction log did not persist the batch of shard {shard_id} in 30 s")
        assert self.checkpoints is not None
        self.checkpoints.save(shard_id, records[-1]["SequenceNumber"])
        self.metrics.results_out.inc(len(results))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return BatchOutcome(scored=len(results), dead=len(dead))

    def _metric_field(self, name: str) -> str:
        """Sender-chosen names (unknown fields) would make label values unbounded: fold them into "(other)"."""
        known = {*self.service.spec.feature_columns, "(data)", "(envelope)", "(record)"} | {
            k for pair in ENVELOPES for k in pair
        }
        return name if name in known else "(other)"

    def _online_row(self, customer_id: str) -> Any:
        """The customer's row in the online store (None: unknown); the store is opened on the first id-only record."""
        from mlops.online_store import OnlineStoreUnavailable, open_online_store

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

    def _feed_sinks(self, inputs: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]) -> None:
        if not self.sinks or not results:
            return
        now = utc_now_iso()
        id_column = self.service.spec.id_column
        entries = [
            make_entry(
                record,
                result["churn chance"],
                result["model_run_id"],
                SOURCE,
                result["request_id"],
                now,
                customer_id=record.get(id_column) if id_column else None,
            )
            for record, result in zip(inputs, results, strict=True)
        ]
        for sink in self.sinks:
            try:
                sink.submit(entries)
            except Exception:  # a sink must never stop scoring; it logs and spools on its own
                log.exception("sink %s refused %d prediction(s)", type(sink).__name__, len(entries))


# ---------------------------------------------------------------------------------------------- main
def make_sinks(settings: Settings, dataset: str) -> list[PredictionSink]:
    """The prediction log (PREDICTION_LOG_URI) and, when DRIFT_SERVICE_URL is set, the drift service."""
    from mlops.prediction_log import open_prediction_log
    from server.sinks import DriftSink, PredictionLogSink

    built: list[PredictionSink] = [PredictionLogSink(open_prediction_log(settings))]
    if settings.drift_service_url:
        built.append(DriftSink(settings.drift_service_url, dataset))
    return built


def close_sinks(sinks: Iterable[Any], timeout_s: float = 10.0) -> None:
    """Drain the sinks' queues on shutdown (the prediction log spools what it cannot write)."""
    from server.sinks import close_all

    close_all(list(sinks), timeout_s)


def _check_streams(client: Any, settings: Settings) -> None:
    for setting, stream in (
        ("KINESIS_PREDICTIONS_STREAM", settings.kinesis_predictions_stream),
        ("KINESIS_RESULTS_STREAM", settings.kinesis_results_stream),
        ("KINESIS_DEAD_LETTER_STREAM", settings.kinesis_dead_letter_stream),
    ):
        try:
            client.describe_stream_summary(StreamName=stream)
        except EndpointConnectionError as error:
            raise ServiceUnavailable(
                f"Kinesis is unreachable ({aws.describe_endpoint(settings)}); start it or fix AWS_ENDPOINT_URL"
            ) from error
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ServiceUnavailable(
                    f"Kinesis stream '{stream}' does not exist (setting {setting}); create it with `make init_aws`"
                ) from error
            raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.serve_kinesis",
        description="Score records from the Kinesis predictions stream and write results "
        '(envelope: {"request_id": "...", "record": {...}}).',
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="seconds to wait after a round that read nothing (latency vs. GetRecords calls)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="GetRecords Limit (default MAX_BATCH_RECORDS)")
    parser.add_argument("--metrics-port", type=int, default=None, help="default KINESIS_METRICS_PORT")
    parser.add_argument("--no-sinks", action="store_true", help="do not write the prediction log / drift service")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prometheus_client import start_http_server

    from server.model_service import ModelService

    try:
        settings = load_settings(args.env)
        client = aws.client("kinesis", settings)
        _check_streams(client, settings)
        service = ModelService.from_settings(settings)
        sinks: list[PredictionSink] = [] if args.no_sinks else make_sinks(settings, service.spec.name)
        consumer = KinesisConsumer(
            settings, service, sinks, client, poll_interval_s=args.poll_interval, batch_limit=args.batch_size
        )
    except (ConfigurationError, ServiceUnavailable) as error:
        print(f"serve_kinesis: error: {error}", file=sys.stderr)
        return 2
    from server.registry_follower import RegistryFollower

    consumer.follower = RegistryFollower(settings, service.run_id, consumer.switch_model)
    if settings.shadow_model:
        from server.shadow import ShadowScorer
        from server.sinks import DriftSink

        logs = [s for s in sinks if not isinstance(s, DriftSink)]
        consumer.shadow = ShadowScorer(settings, lambda entries: [s.submit(entries) for s in logs])
    port = args.metrics_port or settings.kinesis_metrics_port
    try:
        start_http_server(port, addr=settings.api_host, registry=consumer.metrics.registry)
    except OSError as error:
        print(
            f"serve_kinesis: error: metrics port {settings.api_host}:{port} unavailable ({error}); "
            "set KINESIS_METRICS_PORT",
            file=sys.stderr,
        )
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: finishing the batch in progress, then stopping", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "consuming %s -> %s (dead letters: %s) with model %s; metrics on http://%s:%d/metrics",
        settings.kinesis_predictions_stream,
        settings.kinesis_results_stream,
        settings.kinesis_dead_letter_stream,
        service.run_id,
        settings.api_host,
        port,
    )
    try:
        consumer.run()
    finally:
        close_sinks(sinks)
    log.info("stopped cleanly; checkpoints in %s", consumer.checkpoints.path if consumer.checkpoints else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
