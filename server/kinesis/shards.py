"""Reading every shard of the predictions stream: listing (resharding included), iterators from checkpoints, polling.

Every shard is read (shards that appear after a reshard too, children only once their parents are finished); a
shard whose batch failed is read again from its checkpoint after a pause. `ShardReader` is the consumer's reading
half: the consumer (server.kinesis.consumer) supplies the client, the checkpoints and `process_batch`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from mlops.aws import ServiceUnavailable
from server.kinesis.checkpoints import CheckpointStore
from server.kinesis.leases import LeaseCheckpoints, LeaseLost
from server.kinesis.metrics import ConsumerMetrics
from server.kinesis.writer import PutError

log = logging.getLogger("serve_kinesis")


@dataclass
class Shard:
    shard_id: str
    parents: tuple[str, ...] = ()
    iterator: str | None = None
    closed: bool = False
    retry_at: float = 0.0  # monotonic time before which the shard is not read (after a failure)


class ShardReader:
    """The polling loop over the shards; a consumer that mixes it in defines the attributes below."""

    kinesis_client: Any
    stream: str
    limit: int
    shard_refresh_s: float
    checkpoints: CheckpointStore | LeaseCheckpoints | None
    metrics: ConsumerMetrics
    _stop: threading.Event
    _shards: dict[str, Shard]
    _listed_at: float

    def process_batch(self, shard_id: str, records: Sequence[dict[str, Any]]) -> Any:
        raise NotImplementedError

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
        """List the stream's shards (all pages); new ones join, checkpointed-closed ones are skipped, closed ones the
        stream no longer lists are forgotten."""
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
            self._shards[shard_id] = Shard(shard_id, parents, closed=self.checkpoints.get(shard_id).closed)
            log.info("shard %s joined (parents %s)", shard_id, list(parents) or "none")
        here = {shard["ShardId"] for shard in listed}
        for gone in [key for key, shard in self._shards.items() if key not in here and shard.closed]:
            del self._shards[gone]  # trimmed from the stream after being read to its end: forgotten (and its lease)
        self._listed_at = time.monotonic()
        self.metrics.shards.set(sum(1 for s in self._shards.values() if not s.closed))
        return [s.shard_id for s in self._shards.values()]

    def _readable(self, shard: Shard) -> bool:
        """A child shard waits until every parent we know of has been read to its end (order per key). In a group
        (leases), only a shard whose lease this consumer holds, parents finished by whichever consumer read them."""
        if shard.closed or time.monotonic() < shard.retry_at:
            return False
        if isinstance(self.checkpoints, LeaseCheckpoints):
            if not self.checkpoints.owns(shard.shard_id):
                shard.iterator = None  # held again later: read from the lease's checkpoint, not from here
                return False
            return True
        return all(self._shards[p].closed for p in shard.parents if p in self._shards)

    def _iterator(self, shard: Shard) -> str:
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
        if isinstance(self.checkpoints, LeaseCheckpoints):
            held = self.checkpoints.tick([(s.shard_id, s.parents) for s in self._shards.values()])
            self.metrics.shards.set(len(held))
        total = 0
        for shard in list(self._shards.values()):
            if self._stop.is_set():
                break
            if not self._readable(shard):
                continue
            try:
                total += self._poll_shard(shard)
            except LeaseLost as error:  # another consumer holds it now and reads it from the lease's checkpoint
                log.warning("shard %s: %s; left to its new owner", shard.shard_id, error)
                shard.iterator = None
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

    def _poll_shard(self, shard: Shard) -> int:
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
