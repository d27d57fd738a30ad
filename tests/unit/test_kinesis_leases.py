"""The lease table of the Kinesis consumer group (server.kinesis.leases) on moto's DynamoDB in process, with a
clock the test moves: even spreading, takeover after the lease timeout, steals, conditional writes that make a
stale owner lose, children only after their parents, and KCL's item attributes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from server.kinesis.leases import SHARD_END, LeaseCoordinator, LeaseLost, LeaseTable

SHARDS = [(f"shardId-00000000000{i}", ()) for i in range(4)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table() -> Iterator[LeaseTable]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        made = LeaseTable(client, "churn-serve-kinesis-leases")
        made.ensure()
        made.ensure()  # idempotent
        yield made


def workers(table: LeaseTable, clock: Clock, *names: str) -> list[LeaseCoordinator]:
    return [LeaseCoordinator(table, name, lease_timeout_s=10, clock=clock) for name in names]


def owners(table: LeaseTable) -> Counter[str | None]:
    return Counter(lease.owner for lease in table.all())


def settle(group: list[LeaseCoordinator], clock: Clock, rounds: int = 6) -> None:
    for _ in range(rounds):
        for worker in group:
            worker.tick()
        clock.now += 2


def test_shards_spread_evenly_and_the_items_are_kcls(table: LeaseTable) -> None:
    clock = Clock()
    group = workers(table, clock, "a", "b")
    assert group[0].sync_shards(SHARDS) == 4 and group[1].sync_shards(SHARDS) == 0
    settle(group, clock)
    assert owners(table) == {"a": 2, "b": 2}
    assert {k for w in group for k in w.held} == {s for s, _ in SHARDS}  # each shard held by exactly one
    item = table.client.get_item(TableName=table.name, Key={"leaseKey": {"S": SHARDS[0][0]}})["Item"]
    assert {"leaseKey", "leaseOwner", "leaseCounter", "checkpoint", "ownerSwitchesSinceCheckpoint"} <= set(item)


def test_a_restarted_worker_with_a_stable_id_resumes_its_leases_at_once(table: LeaseTable) -> None:
    clock = Clock()
    a, b = workers(table, clock, "host-kinesis-0", "host-kinesis-1")
    a.sync_shards(SHARDS)
    settle([a, b], clock)
    mine = set(a.held)
    assert len(mine) == 2
    switches = {lease.key: lease.owner_switches for lease in table.all()}
    (again,) = workers(table, clock, "host-kinesis-0")  # supervisord restarted member 0: same id, nothing held
    assert set(again.tick()) == mine  # the first tick, well inside the lease timeout
    b.tick()
    assert owners(table) == {"host-kinesis-0": 2, "host-kinesis-1": 2}
    assert {lease.key: lease.owner_switches for lease in table.all()} == switches  # not a change of owner


def test_a_dead_workers_leases_are_taken_after_the_timeout_and_not_before(table: LeaseTable) -> None:
    clock = Clock()
    a, b, c = workers(table, clock, "a", "b", "c")
    a.sync_shards(SHARDS)
    settle([a, b, c], clock)
    assert sorted(owners(table).values()) == [1, 1, 2]  # 4 shards over 3: nobody idle
    dead = max((a, b, c), key=lambda w: len(w.held))
    alive = [w for w in (a, b, c) if w is not dead]
    lost = set(dead.held)
    for _ in range(4):  # 8 s without the dead one's heartbeat: not yet expired
        for worker in alive:
            worker.tick()
        clock.now += 2
    assert owners(table)[dead.worker] == 2
    settle(alive, clock, rounds=6)  # past the 10 s timeout: taken over, spread 2/2
    assert sorted(owners(table).values()) == [2, 2] and dead.worker not in owners(table)
    assert lost <= {k for w in alive for k in w.held}
    taken = [lease for lease in table.all() if lease.key in lost]
    assert all(lease.owner_switches >= 2 for lease in taken)  # taken at start, then taken over


def test_a_stale_owner_cannot_checkpoint_or_renew_after_a_takeover(table: LeaseTable) -> None:
    clock = Clock()
    a, b = workers(table, clock, "a", "b")
    a.sync_shards(SHARDS[:1])
    a.tick()
    shard = SHARDS[0][0]
    a.checkpoint(shard, "49590338271490256608559692538361571095921575989136588898")
    clock.now += 30  # a paused (GC, a stuck call) longer than the timeout: b sees the counter still
    b.tick()
    clock.now += 30
    assert shard in b.tick()
    with pytest.raises(LeaseLost):
        a.checkpoint(shard, "49590338271490256608559692538361571095921575989136588999")
    assert shard not in a.held and not a.tick()  # renewal fails too: a drops it and takes nothing back
    lease = next(lease for lease in table.all() if lease.key == shard)
    assert lease.owner == "b" and lease.checkpoint.endswith("898")  # b resumes after a's last checkpoint


def test_a_new_worker_steals_up_to_its_share(table: LeaseTable) -> None:
    clock = Clock()
    a, b = workers(table, clock, "a", "b")
    a.sync_shards(SHARDS)
    settle([a], clock)
    assert owners(table) == {"a": 4}
    settle([a, b], clock)
    assert owners(table) == {"a": 2, "b": 2}


def test_children_are_processed_only_after_their_parents_reach_the_end(table: LeaseTable) -> None:
    clock = Clock()
    (a,) = workers(table, clock, "a")
    parent = "shardId-000000000000"
    children = [("shardId-000000000004", (parent,)), ("shardId-000000000005", (parent,))]
    a.sync_shards([(parent, ()), *children])
    a.tick()
    assert [lease.key for lease in a.processable()] == [parent]
    a.checkpoint(parent, SHARD_END)
    assert parent not in a.held
    a.tick()
    assert sorted(lease.key for lease in a.processable()) == [key for key, _ in children]
    assert next(lease for lease in table.all() if lease.key == children[0][0]).parents == (parent,)


def test_a_finished_shard_that_left_the_stream_loses_its_lease_and_its_children_go_on(table: LeaseTable) -> None:
    clock = Clock()
    (a,) = workers(table, clock, "a")
    parent, open_shard, child = "shardId-000000000000", "shardId-000000000001", "shardId-000000000004"
    a.sync_shards([(parent, ()), (open_shard, ()), (child, (parent,))])
    a.tick()
    assert a.forget_gone_shards([child, open_shard]) == []  # the parent is not read to its end yet: kept
    assert a.forget_gone_shards([]) == []  # no listing: nothing is known to be gone
    a.checkpoint(parent, SHARD_END)
    assert a.forget_gone_shards([parent, open_shard, child]) == []  # read, but still in the stream: kept
    assert a.forget_gone_shards([open_shard, child]) == [parent]  # trimmed from the stream: deleted
    assert sorted(lease.key for lease in table.all()) == [open_shard, child]
    a.tick()
    assert sorted(lease.key for lease in a.processable()) == [open_shard, child]
    assert not table.delete_finished(open_shard)  # never a lease still being read


def test_release_hands_leases_over_at_once(table: LeaseTable) -> None:
    clock = Clock()
    a, b = workers(table, clock, "a", "b")
    a.sync_shards(SHARDS)
    settle([a], clock)
    a.release_all()
    assert b.tick().keys() == {s for s, _ in SHARDS}  # no timeout to wait for
