"""Per-shard checkpoints: survive a restart, are written atomically, and are dropped for a recreated stream."""

from __future__ import annotations

import json
from pathlib import Path

from server.kinesis.checkpoints import CheckpointStore, ShardCheckpoint


def test_checkpoints_survive_a_new_instance(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "predictions", "2026-01-01T00:00:00")
    store.save("shardId-000000000000", "111")
    store.save("shardId-000000000001", "222")
    store.save("shardId-000000000000", "333")
    again = CheckpointStore(tmp_path, "predictions", "2026-01-01T00:00:00")
    assert again.get("shardId-000000000000") == ShardCheckpoint("333", False)
    assert again.get("shardId-000000000001") == ShardCheckpoint("222", False)
    assert again.get("shardId-000000000009") == ShardCheckpoint(None, False)


def test_closing_a_shard_keeps_its_sequence_number(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "predictions")
    store.save("s-0", "42")
    store.save("s-0", None, closed=True)
    assert CheckpointStore(tmp_path, "predictions").get("s-0") == ShardCheckpoint("42", True)


def test_file_is_complete_json_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "nested", "my/stream name")
    for i in range(20):
        store.save("s-0", str(i))
    files = list((tmp_path / "nested").iterdir())
    assert [f.name for f in files] == ["my_stream_name.json"]
    assert json.loads(files[0].read_text())["shards"]["s-0"]["sequence_number"] == "19"


def test_checkpoints_of_a_recreated_stream_are_discarded(tmp_path: Path) -> None:
    CheckpointStore(tmp_path, "predictions", "created-1").save("s-0", "999")
    assert CheckpointStore(tmp_path, "predictions", "created-2").get("s-0").sequence_number is None
    assert CheckpointStore(tmp_path, "predictions", "created-1").get("s-0").sequence_number == "999"


def test_a_corrupt_file_means_start_from_the_oldest_record(tmp_path: Path) -> None:
    (tmp_path / "predictions.json").write_text('{"shards": ')
    assert CheckpointStore(tmp_path, "predictions").all() == {}
