"""The scale-out settings, a part of `mlops.settings.Settings` (which inherits them): how consumers of one stream
form a group (server.kinesis.leases)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ScaleSettings(BaseModel):
    kinesis_lease_table: str | None = Field(
        default=None,
        description="DynamoDB table of the Kinesis consumers' shard leases (KCL's layout): set, consumers of the "
        "stream share its shards and take over a dead one's; empty: one consumer, checkpoints in STATE_DIR",
    )
    kinesis_lease_timeout_s: float = Field(
        default=10.0, gt=0, description="a lease whose counter has not moved this long is taken over"
    )
    kinesis_worker_id: str | None = Field(
        default=None, description="this consumer's name in the lease table; empty: <hostname>-<pid>"
    )
