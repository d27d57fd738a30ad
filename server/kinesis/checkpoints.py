"""Per-shard Kinesis checkpoints in one JSON file per stream, written atomically.

Why a file and not DynamoDB (what the KCL uses): the native runtime has no DynamoDB, and one consumer
process owns a stream here. The consumer saves a shard's sequence number only after the results of the batch
that ends there are written, so a restart (even after SIGKILL) resumes from the last fully handled batch:
at-least-once delivery, with the request id as the key downstream.

The file also records the stream's creation time: the native emulator keeps streams in memory, so `make up`
recreates them and their sequence numbers start again. Checkpoints of an older stream are then discarded
instead of pointing into the wrong history.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.atomic_file import write_atomic

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class ShardCheckpoint:
    """Where reading a shard resumes: after `sequence_number`; `closed` once the shard's end was reached."""

    sequence_number: str | None = None
    closed: bool = False


class CheckpointStore:
    """Checkpoints of one stream, kept in memory and mirrored to `<folder>/<stream>.json` on every save."""

    def __init__(self, folder: Path, stream: str, stream_created: str | None = None) -> None:
        self.path = Path(folder) / f"{_UNSAFE.sub('_', stream)}.json"
        self.stream = stream
        self.stream_created = stream_created
        self._shards: dict[str, ShardCheckpoint] = {}
        self._load()

    # ---------------------------------------------------------------------------------------- reading
    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            shards = data["shards"]
            if not isinstance(shards, dict):
                raise TypeError("'shards' is not an object")
        except (OSError, ValueError, KeyError, TypeError) as error:
            # A torn file cannot happen with atomic writes; anything else is corruption: start over, loudly.
            log.error("checkpoint file %s is unreadable (%s): starting from the oldest record", self.path, error)
            return
        saved_created = data.get("stream_created")
        if self.stream_created and saved_created and saved_created != self.stream_created:
            log.warning(
                "stream %s was recreated (created %s, checkpoints are for %s): discarding old checkpoints",
                self.stream,
                self.stream_created,
                saved_created,
            )
            return
        self._shards = {
            shard: ShardCheckpoint(entry.get("sequence_number"), bool(entry.get("closed", False)))
            for shard, entry in shards.items()
            if isinstance(entry, dict)
        }

    def get(self, shard_id: str) -> ShardCheckpoint:
        return self._shards.get(shard_id, ShardCheckpoint())

    def all(self) -> dict[str, ShardCheckpoint]:
        return dict(self._shards)

    # ---------------------------------------------------------------------------------------- writing
    def save(self, shard_id: str, sequence_number: str | None, closed: bool = False) -> None:
        """Record progress on a shard and persist it before returning (the caller's batch is then done)."""
        previous = self.get(shard_id)
        self._shards[shard_id] = ShardCheckpoint(sequence_number or previous.sequence_number, closed)
        self._write()

    def _write(self) -> None:
        payload: dict[str, Any] = {
            "stream": self.stream,
            "stream_created": self.stream_created,
            "shards": {
                shard: {"sequence_number": cp.sequence_number, "closed": cp.closed}
                for shard, cp in sorted(self._shards.items())
            },
        }
        write_atomic(self.path, json.dumps(payload, indent=2))
