"""The online store: the latest feature row of every customer, for scoring by id.

Filled from the S3 feature store (the offline store) by `make materialize` (mlops/materialize.py); read by the API
(`GET /customers/<id>/churn`), the Kinesis consumer (id-only envelopes) and the batch (every customer). One row per
(data set, customer id): the clean feature values as the contract returns them, and the snapshot (data hash) they
came from. Writes are upserts, so materializing the same snapshot twice changes nothing; every materialization is
recorded (data set, snapshot, rows, time).

ONLINE_STORE_URI picks the backend: `sqlite:///path` (default: STATE_DIR/online.sqlite) or `redis://host:port/db`
(Debian's redis-server natively, the redis service in compose). A store that cannot be reached raises
OnlineStoreUnavailable, whose message names the setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops.stores.base import StoreUnavailable, unavailable

SCAN_BATCH = 1000
WHAT, SETTING = "online store", "ONLINE_STORE_URI"


class OnlineStoreUnavailable(StoreUnavailable):
    """The online store cannot be read or written; the message names ONLINE_STORE_URI."""


def down(uri: str, error: BaseException) -> StoreUnavailable:
    return unavailable(WHAT, SETTING, uri, error, OnlineStoreUnavailable)


@dataclass(frozen=True)
class OnlineRow:
    customer_id: str
    features: dict[str, Any]
    snapshot: str  # data hash of the feature-store snapshot the row came from
    materialized_at: str


class OnlineStore(Protocol):
    uri: str

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int: ...

    def get(self, dataset: str, customer_id: str) -> OnlineRow | None: ...

    def scan(self, dataset: str) -> Iterator[OnlineRow]: ...

    def count(self, dataset: str) -> int: ...

    def materializations(self, dataset: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def dumps(features: Mapping[str, Any]) -> str:
    return json.dumps(dict(features), separators=(",", ":"), allow_nan=False)
