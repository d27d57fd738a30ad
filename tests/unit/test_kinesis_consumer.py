"""The consumer's batch logic against an in-memory Kinesis fake: scoring, dead letters, retries, checkpoints, shards.

The real-server proof (moto, a real model, SIGKILL and restart) is tests/integration/test_kinesis_serving.py.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.contract import validate_record
from mlops.data import clean, generate_bank_churners
from mlops.settings import PROJECT_ROOT, Settings, load_settings
from mlops.spec import FeatureSpec
from server.kinesis.checkpoints import CheckpointStore
from server.kinesis.consumer import KinesisConsumer
from server.kinesis.writer import PutError, put_all
from simulation_business.sampling import to_records

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
RECORDS = to_records(clean(generate_bank_churners(20, seed=5), SPEC, require_target=False), SPEC)


class FakeKinesis:
    """Just enough of the Kinesis API: shards with parents, iterators as (shard, position), partial put failures."""

    def __init__(self, shards: Mapping[str, str | None]) -> None:
        self.shards = dict(shards)  # shard id -> parent
        self.data: dict[str, list[dict[str, Any]]] = {s: [] for s in shards}
        self.closed: set[str] = set()
        self.streams: dict[str, list[tuple[bytes, str]]] = {}
        self.fail_puts = 0  # entries to fail (ErrorCode) in the next put_records calls

    def add(self, shard: str, data: bytes) -> None:
        n = len(self.data[shard])
        self.data[shard].append({"Data": data, "SequenceNumber": f"{shard}-{n:05d}", "PartitionKey": "k"})

    def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        return {"StreamDescriptionSummary": {"StreamCreationTimestamp": datetime(2026, 1, 1, tzinfo=UTC)}}

    def list_shards(self, **_: Any) -> dict[str, Any]:
        return {"Shards": [{"ShardId": s, **({"ParentShardId": p} if p else {})} for s, p in self.shards.items()]}

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, **kw: Any) -> dict[str, Any]:
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        else:
            position = int(kw["StartingSequenceNumber"].rsplit("-", 1)[1]) + 1
        return {"ShardIterator": json.dumps([ShardId, position])}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, position = json.loads(ShardIterator)
        records = self.data[shard][position : position + Limit]
        end = position + len(records)
        done = shard in self.closed and end >= len(self.data[shard])
        return {
            "Records": records,
            "NextShardIterator": None if done else json.dumps([shard, end]),
            "MillisBehindLatest": 0,
        }

    def put_records(self, StreamName: str, Records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out = []
        for entry in Records:
            if self.fail_puts > 0:
                self.fail_puts -= 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                self.streams.setdefault(StreamName, []).append((entry["Data"], entry["PartitionKey"]))
                out.append({"SequenceNumber": "1", "ShardId": "s"})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in out), "Records": out}

    def stream(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(data) for data, _ in self.streams.get(name, [])]


class FakeService:
    spec = SPEC
    run_id = "run-123"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def check(self, record: Any, index: int | None = None) -> dict[str, Any]:
        return validate_record(record, SPEC, index)  # the real contract; only the model is faked

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.calls.append(len(records))
        return np.full(len(records), 0.25)

    def predict_with_run(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, str]:
        return self.predict_records(records), self.run_id

    @property
    def bundle(self) -> Any:  # what Scored keeps: the run and spec of the model that answered
        return types.SimpleNamespace(run_id=self.run_id, spec=self.spec)

    def predict_with_bundle(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, Any]:
        return self.predict_records(records), self.bundle


class ListSink:
    def __init__(self) -> None:
        self.entries: list[Mapping[str, Any]] = []

    def submit(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entries.extend(records)


def envelope_bytes(i: int) -> bytes:
    return json.dumps({"request_id": f"r{i}", "record": RECORDS[i % len(RECORDS)]}).encode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings("local", state_dir=tmp_path, max_batch_records=100)


def make(settings: Settings, client: FakeKinesis, sinks: list[Any] | None = None) -> KinesisConsumer:
    return KinesisConsumer(settings, FakeService(), sinks or [], client, poll_interval_s=0)


def test_a_batch_is_scored_once_and_bad_records_become_dead_letters(settings: Settings) -> None:
    client = FakeKinesis({"s0": None})
    for i in range(5):
        client.add("s0", envelope_bytes(i))
    client.add("s0", b"not json at all")
    bad = dict(RECORDS[0], customer_age="old")
    client.add("s0", json.dumps({"request_id": "bad-age", "record": bad}).encode())
    sink = ListSink()
    consumer = make(settings, client, [sink])

    assert consumer.poll_once() == 7
    assert consumer.service.calls == [5]  # one predict call for the whole batch
    results = client.stream(settings.kinesis_results_stream)
    assert [r["request_id"] for r in results] == [f"r{i}" for i in range(5)]
    assert {k: v for k, v in results[0].items() if k != "missing"} == {
        "request_id": "r0",
        "churn chance": 0.25,
        "model_run_id": "run-123",
    }
    assert [key for _, key in client.streams[settings.kinesis_results_stream]] == [f"r{i}" for i in range(5)]
    dead = client.stream(settings.kinesis_dead_letter_stream)
    assert [d["field"] for d in dead] == ["(data)", "customer_age"]
    assert "not JSON" in dead[0]["reason"] and dead[0]["raw"] == "not json at all"
    assert dead[1]["request_id"] == "bad-age" and "must be a number" in dead[1]["reason"]
    assert dead[1]["sequence_number"] == "s0-00006"
    assert [e["request_id"] for e in sink.entries] == [f"r{i}" for i in range(5)]
    assert {e["source"] for e in sink.entries} == {"kinesis"} and sink.entries[0]["prediction"] == 0.25
    assert CheckpointStore(settings.state_dir / "kinesis-checkpoints", "predictions").get("s0").sequence_number == (
        "s0-00006"
    )


def test_partial_put_failures_are_retried(settings: Settings) -> None:
    client = FakeKinesis({"s0": None})
    client.fail_puts = 3
    put_all(client, "results", [(b"a", "1"), (b"b", "2"), (b"c", "3"), (b"d", "4")], sleep=lambda _: None)
    assert sorted(data for data, _ in client.streams["results"]) == [b"a", b"b", b"c", b"d"]
    assert client.fail_puts == 0


def test_put_gives_up_with_a_clear_error(settings: Settings) -> None:
    client = FakeKinesis({"s0": None})
    client.fail_puts = 10_000
    with pytest.raises(PutError, match="not written to stream 'results' after 3 attempts"):
        put_all(client, "results", [(b"a", "1")], attempts=3, sleep=lambda _: None)


def test_a_failed_batch_is_not_checkpointed_and_is_read_again(settings: Settings) -> None:
    client = FakeKinesis({"s0": None})
    for i in range(3):
        client.add("s0", envelope_bytes(i))
    consumer = make(settings, client)
    consumer.put_attempts = 2
    client.fail_puts = 10_000
    consumer.poll_once()
    assert consumer.checkpoints is not None and consumer.checkpoints.get("s0").sequence_number is None
    client.fail_puts = 0
    consumer._shards["s0"].retry_at = 0  # skip the pause after a failure
    consumer.poll_once()
    assert [r["request_id"] for r in client.stream("results")] == ["r0", "r1", "r2"]
    assert consumer.checkpoints.get("s0").sequence_number == "s0-00002"


def test_restart_resumes_after_the_checkpoint(settings: Settings) -> None:
    client = FakeKinesis({"s0": None, "s1": None})
    for i in range(4):
        client.add("s0" if i % 2 else "s1", envelope_bytes(i))
    make(settings, client).poll_once()
    for i in range(4, 6):
        client.add("s0" if i % 2 else "s1", envelope_bytes(i))
    make(settings, client).poll_once()  # a new process: same state dir
    ids = [r["request_id"] for r in client.stream("results")]
    assert sorted(ids) == [f"r{i}" for i in range(6)]


def test_child_shard_waits_for_its_parent_and_new_shards_are_found(settings: Settings) -> None:
    client = FakeKinesis({"parent": None})
    client.add("parent", envelope_bytes(0))
    consumer = make(settings, client)
    consumer.poll_once()
    client.shards["child"] = "parent"  # a reshard: parent closed, child appears
    client.data["child"] = []
    client.add("child", envelope_bytes(1))
    client.add("parent", envelope_bytes(2))
    consumer.refresh_shards()
    assert not consumer._readable(consumer._shards["child"])
    client.closed.add("parent")
    for _ in range(3):
        consumer.poll_once()
    assert [r["request_id"] for r in client.stream("results")] == ["r0", "r2", "r1"]  # parent's records first
    assert consumer.checkpoints is not None and consumer.checkpoints.get("parent").closed


def test_metrics_count_records(settings: Settings) -> None:
    client = FakeKinesis({"s0": None})
    client.add("s0", envelope_bytes(0))
    client.add("s0", b"{}")
    consumer = make(settings, client)
    consumer.poll_once()
    registry = consumer.metrics.registry
    assert registry.get_sample_value("kinesis_records_in_total") == 2
    assert registry.get_sample_value("kinesis_results_out_total") == 1
    assert registry.get_sample_value("kinesis_dead_letters_total", {"field": "(record)", "reason": "record"}) == 1
    assert registry.get_sample_value("kinesis_millis_behind_latest", {"shard": "s0"}) == 0
    assert registry.get_sample_value("kinesis_batch_seconds_count") == 1


def test_no_record_can_stop_the_consumer(settings: Settings) -> None:
    """Issue 22: 100,000 nested arrays (RecursionError in json), a lone surrogate, a bug reached by one record and
    a model that fails on one record: each of them is a dead letter with its reason; every good record is answered
    and the batch is checkpointed (a crash loop on one record is impossible)."""
    client = FakeKinesis({"s0": None})
    client.add("s0", b"[" * 100_000 + b"]" * 100_000)
    client.add("s0", b'{"request_id": "sur", "record": {"CLIENTNUM": "\\ud800"}}')
    client.add("s0", json.dumps({"request_id": "boom", "record": RECORDS[1]}).encode())
    client.add("s0", json.dumps({"request_id": "model-fails", "record": RECORDS[2]}).encode())
    for i in range(3, 8):
        client.add("s0", envelope_bytes(i))
    consumer = make(settings, client)
    service = consumer.service
    real_check, real_predict = service.check, service.predict_records

    def check(record: Any, index: int | None = None) -> dict[str, Any]:
        if record is not None and record == RECORDS[1]:
            raise TypeError("a bug only this record reaches")
        return real_check(record, index)

    def predict(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if any(r == validate_record(RECORDS[2], SPEC) for r in records):
            raise ValueError("the booster refused this row")
        return real_predict(records)

    service.check, service.predict_records = check, predict
    assert consumer.poll_once() == 9
    results = client.stream(settings.kinesis_results_stream)
    assert [r["request_id"] for r in results] == [f"r{i}" for i in range(3, 8)]
    dead = {d["sequence_number"]: d for d in client.stream(settings.kinesis_dead_letter_stream)}
    assert len(dead) == 4
    assert "nested too deeply" in dead["s0-00000"]["reason"]
    assert dead["s0-00001"]["field"] == "record.CLIENTNUM" and "lone surrogate" in dead["s0-00001"]["reason"]
    assert dead["s0-00002"]["reason"] == "internal error: TypeError: a bug only this record reaches"
    assert "ValueError: the booster refused this row" in dead["s0-00003"]["reason"]
    assert dead["s0-00003"]["request_id"] == "model-fails"
    assert CheckpointStore(settings.state_dir / "kinesis-checkpoints", "predictions").get("s0").sequence_number == (
        "s0-00008"
    )
    registry = consumer.metrics.registry
    assert registry.get_sample_value("kinesis_dead_letters_total", {"field": "(record)", "reason": "internal"}) == 2
    assert registry.get_sample_value("kinesis_dead_letters_total", {"field": "(other)", "reason": "text"}) == 1


def test_a_bare_record_is_scored_under_an_id_from_its_shard_and_sequence(settings: Settings) -> None:
    """The original design's `aws kinesis put-record --data <a record>`; the id is the same on every read, so a
    batch re-read after a crash logs the same prediction (and an outcome settles it once)."""
    client = FakeKinesis({"s0": None})
    client.add("s0", json.dumps(RECORDS[0]).encode())
    client.add("s0", json.dumps({"record": RECORDS[1]}).encode())  # an envelope without an id
    sink = ListSink()
    make(settings, client, [sink]).poll_once()
    results = client.stream(settings.kinesis_results_stream)
    assert [r["request_id"] for r in results] == ["s0:s0-00000", "s0:s0-00001"]
    again_settings = load_settings("local", state_dir=settings.state_dir / "again", max_batch_records=100)
    again = FakeKinesis({"s0": None})
    again.data = client.data
    make(again_settings, again, [sink]).poll_once()  # the same records read again (no checkpoint)
    assert [e["request_id"] for e in sink.entries] == ["s0:s0-00000", "s0:s0-00001"] * 2


def test_a_group_reads_a_parent_to_its_end_before_anyone_reads_its_children(settings: Settings) -> None:
    """Two consumers share shards through leases (moto's DynamoDB in process, a clock the test moves) over a
    faithful fake of a split: the children are read by whichever consumer holds them, only after the parent's
    owner has read it to its end, so a key's records stay in order across the reshard."""
    import boto3
    from moto import mock_aws

    from server.kinesis.leases import SHARD_END, LeaseCheckpoints, LeaseCoordinator, LeaseTable

    now = [0.0]

    def clock() -> float:
        return now[0]

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        table = LeaseTable(dynamodb, "group-leases")
        table.ensure()
        client = FakeKinesis({"parent": None, "other": None})

        def member(name: str) -> KinesisConsumer:
            leases = LeaseCheckpoints(LeaseCoordinator(table, name, lease_timeout_s=9, clock=clock), clock=clock)
            consumer = KinesisConsumer(settings, FakeService(), [], client, checkpoints=leases, poll_interval_s=0)
            consumer.shard_refresh_s = 0
            return consumer

        group = [member("a"), member("b")]

        def rounds(n: int) -> None:
            for _ in range(n):
                for consumer in group:
                    consumer.poll_once()
                now[0] += 4

        client.add("parent", envelope_bytes(0))
        client.add("other", envelope_bytes(1))
        rounds(3)
        assert sorted(lease.owner for lease in table.all()) == ["a", "b"]  # one shard each
        for child in ("child-1", "child-2"):  # the split: parent closes once read, children appear
            client.shards[child] = "parent"
            client.data[child] = []
        client.add("child-1", envelope_bytes(2))
        client.add("child-2", envelope_bytes(3))
        client.add("parent", envelope_bytes(4))
        rounds(3)
        answered = [r["request_id"] for r in client.stream("results")]
        assert sorted(answered) == ["r0", "r1", "r4"]  # the children wait: the parent is not closed yet
        client.closed.add("parent")
        rounds(4)
        answered = [r["request_id"] for r in client.stream("results")]
        assert sorted(answered) == ["r0", "r1", "r2", "r3", "r4"] and answered.index("r4") < answered.index("r2")
        leases = {lease.key: lease for lease in table.all()}
        assert leases["parent"].checkpoint == SHARD_END
        assert {leases["child-1"].owner, leases["child-2"].owner} <= {"a", "b"}
        assert leases["child-1"].parents == ("parent",) and leases["child-1"].checkpoint.startswith("child-1-")
