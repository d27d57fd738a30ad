"""Shard leases in DynamoDB, as the Kinesis Client Library (KCL 2/3) keeps them, so consumers form a group.

The table and its items are KCL's: hash key `leaseKey` (the shard id), `leaseOwner` (a worker id), `leaseCounter`
(raised by every take and renewal: the owner's heartbeat), `checkpoint` (a sequence number, `TRIM_HORIZON` or
`SHARD_END`), `ownerSwitchesSinceCheckpoint`, `parentShardIds`. A team can point the real KCL (amazon-kclpy, whose
jars come from Maven) at the same table later.

Every write is conditional on what the writer last read (the counter, and the owner for the owner's own writes), so
two workers can never both believe they own a shard: the loser's write fails and it drops the lease. A lease
expires when its counter has not moved for `lease_timeout_s` as seen by the observer's own clock (clocks of
different hosts are never compared, as in the KCL). Each `tick`, a worker renews what it holds, then aims at its
fair share, ceil(leases / live workers): it takes unowned or expired leases first, else steals one lease from the
most loaded worker if that one holds more than the share. A shard's lease is only handed to processing once every
parent has been read to its end (`SHARD_END`), so records of a resharded key stay in order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger("serve_kinesis.leases")

TRIM_HORIZON, SHARD_END = "TRIM_HORIZON", "SHARD_END"


class LeaseLost(RuntimeError):
    """A conditional write failed: another worker took the lease (or it changed) since this worker read it."""


@dataclass(frozen=True)
class Lease:
    key: str  # the shard id
    owner: str | None
    counter: int
    checkpoint: str
    owner_switches: int = 0
    parents: tuple[str, ...] = ()

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            key=item["leaseKey"]["S"],
            owner=item.get("leaseOwner", {}).get("S"),
            counter=int(item.get("leaseCounter", {}).get("N", "0")),
            checkpoint=item.get("checkpoint", {}).get("S", TRIM_HORIZON),
            owner_switches=int(item.get("ownerSwitchesSinceCheckpoint", {}).get("N", "0")),
            parents=tuple(sorted(item.get("parentShardIds", {}).get("SS", []))),
        )


class LeaseTable:
    """The lease items of one consumer group (one table per application, as the KCL names it)."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name

    def ensure(self) -> None:
        """Create the table (on-demand capacity) if it does not exist, and wait until it is active."""
        try:
            self.client.describe_table(TableName=self.name)
        except self.client.exceptions.ResourceNotFoundException:
            with contextlib.suppress(self.client.exceptions.ResourceInUseException):  # another worker made it
                self.client.create_table(
                    TableName=self.name,
                    KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            self.client.get_waiter("table_exists").wait(TableName=self.name)

    def all(self) -> list[Lease]:
        leases, start = [], None
        while True:
            page = self.client.scan(
                TableName=self.name, ConsistentRead=True, **({"ExclusiveStartKey": start} if start else {})
            )
            leases += [Lease.from_item(item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(leases, key=lambda lease: lease.key)

    def create(self, shard_id: str, parents: Iterable[str], checkpoint: str = TRIM_HORIZON) -> bool:
        """A lease for a shard no lease exists for (False if one does: another worker synced it first)."""
        item: dict[str, Any] = {
            "leaseKey": {"S": shard_id},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": checkpoint},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
        }
        if parents := sorted(parents):
            item["parentShardIds"] = {"SS": parents}
        try:
            self.client.put_item(TableName=self.name, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def delete_finished(self, shard_id: str) -> bool:
        """Delete a lease read to its end (a condition: never one still being read); False if it was not."""
        try:
            self.client.delete_item(
                TableName=self.name,
                Key={"leaseKey": {"S": shard_id}},
                ConditionExpression="checkpoint = :end",
                ExpressionAttributeValues={":end": {"S": SHARD_END}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _update(self, lease: Lease, expression: str, values: dict[str, Any], owner_must_be: str | None) -> None:
        condition = "leaseCounter = :seen"
        values = {**values, ":seen": {"N": str(lease.counter)}}
        if owner_must_be is not None:
            condition += " AND leaseOwner = :me"
            values[":me"] = {"S": owner_must_be}
        try:
            self.client.update_item(
                TableName=self.name,
                Key={"leaseKey": {"S": lease.key}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException as error:
            raise LeaseLost(f"lease {lease.key} changed since counter {lease.counter}") from error

    def take(self, lease: Lease, owner: str) -> Lease:
        """Own `lease` (unowned, expired or stolen): counter + 1, owner switches + 1 when the owner changes."""
        switches = lease.owner_switches + (lease.owner != owner)
        self._update(
            lease,
            "SET leaseOwner = :owner, leaseCounter = :next, ownerSwitchesSinceCheckpoint = :switches",
            {":owner": {"S": owner}, ":next": {"N": str(lease.counter + 1)}, ":switches": {"N": str(switches)}},
            None,
        )
        return replace(lease, owner=owner, counter=lease.counter + 1, owner_switches=switches)

    def renew(self, lease: Lease) -> Lease:
        assert lease.owner is not None
        self._update(lease, "SET leaseCounter = :next", {":next": {"N": str(lease.counter + 1)}}, lease.owner)
        return replace(lease, counter=lease.counter + 1)

    def checkpoint(self, lease: Lease, sequence_number: str) -> Lease:
        """Record how far the owner has read (SHARD_END at the end): the counter moves too, as a renewal."""
        assert lease.owner is not None
        self._update(
            lease,
            "SET checkpoint = :at, ownerSwitchesSinceCheckpoint = :zero, leaseCounter = :next",
            {":at": {"S": sequence_number}, ":zero": {"N": "0"}, ":next": {"N": str(lease.counter + 1)}},
            lease.owner,
        )
        return replace(lease, checkpoint=sequence_number, owner_switches=0, counter=lease.counter + 1)

    def release(self, lease: Lease) -> None:
        """Give a lease up on a clean shutdown, so another worker takes it at once instead of after the timeout."""
        assert lease.owner is not None
        self._update(
            lease, "REMOVE leaseOwner SET leaseCounter = :next", {":next": {"N": str(lease.counter + 1)}}, lease.owner
        )


@dataclass
class LeaseCoordinator:
    """One worker's view of the group: which leases it holds, which it may process, and its moves each tick."""

    table: LeaseTable
    worker: str
    lease_timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    held: dict[str, Lease] = field(default_factory=dict)
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (counter, when it last moved)

    def sync_shards(self, shards: Iterable[tuple[str, tuple[str, ...]]]) -> int:
        """A lease for every shard (id, parent ids) that has none; returns how many were created."""
        return sum(self.table.create(shard_id, parents) for shard_id, parents in shards)

    def forget_gone_shards(self, listed: Iterable[str]) -> list[str]:
        """Delete the leases of shards read to their end that the stream no longer lists (trimmed after its
        retention), as the KCL's lease cleanup does: the table stays as small as the stream. A child whose parent's
        lease is gone counts that parent as finished (`processable`). Returns the deleted keys."""
        listed = set(listed)
        if not listed:  # no listing this round: nothing is known to be gone
            return []
        gone = [lease.key for lease in self.table.all() if lease.checkpoint == SHARD_END and lease.key not in listed]
        deleted = [key for key in gone if self.table.delete_finished(key)]
        for key in deleted:
            log.info("lease %s deleted: its shard was read to the end and has left the stream", key)
        return deleted

    def _expired(self, lease: Lease, now: float) -> bool:
        counter, since = self._seen.get(lease.key, (None, now))
        if counter != lease.counter:
            self._seen[lease.key] = (lease.counter, now)
            return False
        return now - since > self.lease_timeout_s

    def tick(self) -> dict[str, Lease]:
        """Renew, observe, take or steal; returns the leases this worker holds now."""
        now = self.clock()
        for key, lease in list(self.held.items()):
            try:
                self.held[key] = self.table.renew(lease)
            except LeaseLost:
                log.warning("lease %s lost to another worker", key)
                del self.held[key]
        leases = [lease for lease in self.table.all() if lease.checkpoint != SHARD_END]
        for lease in leases:  # what another worker changed (a steal of ours shows here as a new owner)
            if lease.key in self.held and lease.owner != self.worker:
                del self.held[lease.key]
        # a lease in this worker's name that it does not hold was held by its previous life (a restart with a
        # stable worker id): taken back at once, not after the timeout
        free = [
            lease
            for lease in leases
            if lease.owner is None
            or (lease.owner == self.worker and lease.key not in self.held)
            or (lease.owner != self.worker and self._expired(lease, now))
        ]
        live = {lease.owner for lease in leases if lease.owner is not None and lease not in free} | {self.worker}
        share = math.ceil(len(leases) / len(live)) if leases else 0
        for lease in free:
            if len(self.held) >= share:
                break
            self._try_take(lease)
        if len(self.held) < share:
            self._steal_one(leases, free, share)
        return dict(self.held)

    def _try_take(self, lease: Lease) -> bool:
        try:
            self.held[lease.key] = self.table.take(lease, self.worker)
        except LeaseLost:
            return False
        log.info("took lease %s (from %s)", lease.key, lease.owner or "nobody")
        return True

    def _steal_one(self, leases: list[Lease], free: list[Lease], share: int) -> None:
        by_owner: dict[str, list[Lease]] = {}
        for lease in leases:
            if lease.owner is not None and lease.owner != self.worker and lease not in free:
                by_owner.setdefault(lease.owner, []).append(lease)
        if not by_owner:
            return
        _, theirs = max(by_owner.items(), key=lambda item: (len(item[1]), item[0]))
        # as the KCL: from a worker over the share; or from one at the share when this one needs more than one more
        # (4 shards, 3 workers: 2/2/0 becomes 1/2/1, not a worker left idle)
        if len(theirs) > share or (len(theirs) == share and share - len(self.held) > 1):
            self._try_take(theirs[0])

    def processable(self) -> list[Lease]:
        """The held leases whose parents are all read to their end (or gone from the table: trimmed)."""
        table = {lease.key: lease for lease in self.table.all()}

        def finished(parent: str) -> bool:
            return parent not in table or table[parent].checkpoint == SHARD_END

        return [lease for lease in self.held.values() if all(finished(parent) for parent in lease.parents)]

    def checkpoint(self, shard_id: str, sequence_number: str) -> None:
        """Checkpoint a held shard; raises LeaseLost (and forgets the lease) if another worker took it."""
        lease = self.held.get(shard_id)
        if lease is None:
            raise LeaseLost(f"lease {shard_id} is not held by {self.worker}")
        try:
            self.held[shard_id] = self.table.checkpoint(lease, sequence_number)
        except LeaseLost:
            del self.held[shard_id]
            raise
        if sequence_number == SHARD_END:
            del self.held[shard_id]

    def release_all(self) -> None:
        for lease in list(self.held.values()):
            with contextlib.suppress(LeaseLost):
                self.table.release(lease)
        self.held.clear()


class LeaseCheckpoints:
    """The consumer's checkpoint store when it is one of a group (KINESIS_LEASE_TABLE): checkpoints live in the
    leases, and only the shards this worker holds are read. Same methods as the file store (get, save), plus
    `owns` and `tick`, which the reader calls between batches (every `lease_timeout_s / 3`): renewals are made by
    the polling thread itself, so a batch that outlasts the timeout loses its lease and its checkpoint is refused
    (LeaseLost): the new owner reads that batch again (at most one batch of duplicates per lost lease)."""

    def __init__(self, coordinator: LeaseCoordinator, clock: Callable[[], float] = time.monotonic) -> None:
        self.coordinator = coordinator
        self.clock = clock
        self.path = f"dynamodb table {coordinator.table.name}"
        self._ticked = -1e9
        self._table: dict[str, Lease] = {}
        self._processable: set[str] = set()

    def tick(self, shards: Iterable[tuple[str, tuple[str, ...]]] = ()) -> set[str]:
        """Sync leases for the listed shards, renew/take/steal, and return the shards to read now."""
        now = self.clock()
        if now - self._ticked < self.coordinator.lease_timeout_s / 3:
            return self._processable
        self._ticked = now
        shards = list(shards)
        self.coordinator.sync_shards(shards)
        self.coordinator.forget_gone_shards(shard_id for shard_id, _ in shards)
        self.coordinator.tick()
        self._table = {lease.key: lease for lease in self.coordinator.table.all()}
        self._processable = {lease.key for lease in self.coordinator.processable()}
        return self._processable

    def owns(self, shard_id: str) -> bool:
        return shard_id in self._processable and shard_id in self.coordinator.held

    def get(self, shard_id: str) -> Any:
        from server.kinesis.checkpoints import ShardCheckpoint

        lease = self.coordinator.held.get(shard_id) or self._table.get(shard_id)
        if lease is None or lease.checkpoint == TRIM_HORIZON:
            return ShardCheckpoint()
        if lease.checkpoint == SHARD_END:
            return ShardCheckpoint(None, True)
        return ShardCheckpoint(lease.checkpoint, False)

    def save(self, shard_id: str, sequence_number: str | None, closed: bool = False) -> None:
        """Checkpoint in the lease; raises LeaseLost when another worker holds it now."""
        self.coordinator.checkpoint(shard_id, SHARD_END if closed else str(sequence_number))
        if closed:
            self._processable.discard(shard_id)
            self._ticked = -1e9  # children may be processable now

    def close(self) -> None:
        """A clean shutdown hands the leases over at once."""
        self.coordinator.release_all()
