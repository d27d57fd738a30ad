"""Backups of the state that lives in servers (mlops.backup.services): the online store in a real Redis (Debian's
redis-server) through `create_backup` -> Redis emptied -> `restore_backup`. The MongoDB dump's adapter test is in
tests/unit/test_backup_mongo_dump.py (no MongoDB runs here)."""

from __future__ import annotations

from pathlib import Path

import redis

from mlops import aws
from mlops.backup import create_backup, restore_backup
from mlops.settings import Settings
from mlops.stores.online.redis import RedisOnlineStore
from tests.support.redis_server import redis_server

PASSWORD = "backup-test-redis-password"


def contents(client: redis.Redis) -> dict[bytes, object]:
    """Every online-store key's value, read by its type (a DUMP's bytes depend on the order of a set's members)."""
    read = {b"hash": client.hgetall, b"set": client.smembers, b"string": client.get}
    read[b"list"] = lambda key: client.lrange(key, 0, -1)
    return {key: read[client.type(key)](key) for key in client.scan_iter("online:*")}


def test_the_redis_online_store_comes_back_from_a_backup(settings: Settings, tmp_path: Path) -> None:
    with redis_server(tmp_path, PASSWORD) as (url, _):
        run = settings.model_copy(
            update={"online_store_uri": url, "state_dir": tmp_path / "state", "s3_bucket": "backup-services-test"}
        )
        run.state_dir.mkdir()
        aws.ensure_bucket(aws.client("s3", run), run.s3_bucket, run.aws_region)
        store = RedisOnlineStore(url)
        rows = [(f"{7e8 + i:.0f}", {"customer_age": 30 + i % 40, "gender": "F"}) for i in range(1500)]
        assert store.write("bank_churners", rows, "snap-1") == 1500
        client = redis.Redis.from_url(url)
        client.set("online:bank_churners:expiring", "x", ex=3600)
        client.set("rate:not-ours", "1")  # not the online store's: not in its backup
        before = contents(client)

        manifest = create_backup(run, str(tmp_path / "backups"), say=lambda _: None)
        assert manifest["services"] == {"redis": len(before)}
        client.flushall()
        restore_backup(run, manifest["location"], say=lambda _: None)

        assert contents(client) == before
        assert 3000 < client.ttl("online:bank_churners:expiring") <= 3600
        assert client.get("rate:not-ours") is None
        row = store.get("bank_churners", rows[7][0])
        assert row is not None and row.features == rows[7][1] and row.snapshot == "snap-1"
        assert not (run.state_dir / "restore-pending").exists()  # everything went back
