"""The online store in Redis (Debian's redis-server natively, the redis service in compose)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mlops.stores.ids import utc_now_iso
from mlops.stores.online.base import SCAN_BATCH, OnlineRow, down, dumps


class RedisOnlineStore:
    """A hash per customer (`online:<dataset>:<id>`: snapshot, features, materialized_at), a set of the ids, and a
    list of materializations. Short timeouts: a dead Redis is a quick, named error, not a hung request."""

    def __init__(self, uri: str, timeout_s: float = 1.0) -> None:
        import redis

        self.uri = uri
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            uri, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
        )

    @staticmethod
    def _key(dataset: str, customer_id: str) -> str:
        return f"online:{dataset}:{customer_id}"

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except self._errors as error:
            raise down(self.uri, error) from error

    def write(self, dataset: str, rows: Iterable[tuple[str, Mapping[str, Any]]], snapshot: str) -> int:
        now = utc_now_iso()
        items = [(customer, dumps(features)) for customer, features in rows]

        def write() -> int:
            changed = 0
            for start in range(0, len(items), SCAN_BATCH):
                chunk = items[start : start + SCAN_BATCH]
                reader = self._client.pipeline(transaction=False)
                for customer, _ in chunk:
                    reader.hmget(self._key(dataset, customer), "snapshot", "features")
                current = reader.execute()
                writer = self._client.pipeline(transaction=True)
                for (customer, text), (old_snapshot, old_features) in zip(chunk, current, strict=True):
                    if old_snapshot == snapshot and old_features == text:
                        continue
                    changed += 1
                    writer.hset(
                        self._key(dataset, customer),
                        mapping={"snapshot": snapshot, "features": text, "materialized_at": now},
                    )
                writer.sadd(f"online:{dataset}:ids", *[customer for customer, _ in chunk])
                writer.execute()
            record = {"snapshot": snapshot, "rows": len(items), "changed": changed, "at": now}
            self._client.rpush(f"online:{dataset}:materializations", json.dumps(record))
            return changed

        return int(self._guard(write))

    def get(self, dataset: str, customer_id: str) -> OnlineRow | None:
        found = self._guard(lambda: self._client.hgetall(self._key(dataset, customer_id)))
        if not found:
            return None
        return OnlineRow(customer_id, json.loads(found["features"]), found["snapshot"], found["materialized_at"])

    def scan(self, dataset: str) -> Iterator[OnlineRow]:
        ids = sorted(self._guard(lambda: self._client.smembers(f"online:{dataset}:ids")))
        for start in range(0, len(ids), SCAN_BATCH):
            chunk = ids[start : start + SCAN_BATCH]

            def read(chunk: list[str] = chunk) -> list[Any]:
                pipe = self._client.pipeline(transaction=False)
                for customer in chunk:
                    pipe.hgetall(self._key(dataset, customer))
                return pipe.execute()

            for customer, found in zip(chunk, self._guard(read), strict=True):
                if found:
                    yield OnlineRow(
                        customer, json.loads(found["features"]), found["snapshot"], found["materialized_at"]
                    )

    def count(self, dataset: str) -> int:
        return int(self._guard(lambda: self._client.scard(f"online:{dataset}:ids")))

    def materializations(self, dataset: str) -> list[dict[str, Any]]:
        raw = self._guard(lambda: self._client.lrange(f"online:{dataset}:materializations", 0, -1))
        return [json.loads(r) for r in raw]

    def close(self) -> None:
        self._client.close()
