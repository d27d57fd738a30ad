"""State that lives in a server, not in STATE_DIR: the prediction log in MongoDB, the online store in Redis.

A backup holds their logical dumps beside the files, under `services/`:
- MongoDB (PREDICTION_LOG_URI=mongodb://...): every collection of the log's database as `<collection>.bson`,
  documents concatenated in BSON, the format of `mongodump` (so `mongorestore --nsInclude` reads it too), and
  `indexes.json` (each index's keys and options: the TTL index with its expireAfterSeconds). Read collection by
  collection while the platform writes, as `mongodump` without `--oplog` reads: each document is whole, the
  collections are not one point in time (a settlement may miss a prediction logged meanwhile; the next backup has
  both).
- Redis (ONLINE_STORE_URI=redis://...): every `online:*` key with Redis' own DUMP of it and its TTL, as JSON lines,
  put back with RESTORE ... REPLACE (the same bytes, whatever the key's type).
The SQLite stores are files of STATE_DIR and copied with them; these dumps only exist where those URIs are set.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlops.settings import Settings

SERVICES = "services"
MONGO, REDIS = "mongo", "redis"
REDIS_PATTERN = "online:*"
CHUNK = 1000


def _mongo_database(uri: str, client_factory: Callable[..., Any] | None) -> Any:
    import pymongo
    from pymongo.uri_parser import parse_uri

    client = (client_factory or pymongo.MongoClient)(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    return client[parse_uri(uri).get("database") or "mlops"]


def _bson_documents(path: Path) -> Iterator[dict[str, Any]]:
    import bson

    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "little")
        yield bson.decode(data[offset : offset + size], codec_options=bson.CodecOptions(tz_aware=True))
        offset += size


def dump_mongo(uri: str, folder: Path, client_factory: Callable[..., Any] | None = None) -> dict[str, int]:
    """Every collection of the database in `uri` into `folder`; returns documents per collection."""
    import bson

    database = _mongo_database(uri, client_factory)
    folder.mkdir(parents=True, exist_ok=True)
    counts, indexes = {}, {}
    for name in sorted(database.list_collection_names()):
        collection = database[name]
        written = 0
        with (folder / f"{name}.bson").open("wb") as handle:
            for document in collection.find().sort("_id", 1):
                handle.write(bson.encode(document))
                written += 1
        counts[name] = written
        indexes[name] = {
            index: {k: v for k, v in info.items() if k not in ("ns", "v")}
            for index, info in collection.index_information().items()
            if index != "_id_"
        }
    (folder / "indexes.json").write_text(json.dumps(indexes, indent=1, default=str))
    return counts


def restore_mongo(uri: str, folder: Path, client_factory: Callable[..., Any] | None = None) -> dict[str, int]:
    """The dumped collections back (each replaced whole), then their indexes; returns documents per collection."""
    database = _mongo_database(uri, client_factory)
    indexes = json.loads((folder / "indexes.json").read_text()) if (folder / "indexes.json").exists() else {}
    counts = {}
    for path in sorted(folder.glob("*.bson")):
        name = path.stem
        database[name].drop()
        batch, restored = [], 0
        for document in _bson_documents(path):
            batch.append(document)
            if len(batch) == CHUNK:
                database[name].insert_many(batch, ordered=False)
                restored, batch = restored + len(batch), []
        if batch:
            database[name].insert_many(batch, ordered=False)
            restored += len(batch)
        for index, info in indexes.get(name, {}).items():
            keys = [(field, direction) for field, direction in info.pop("key")]
            database[name].create_index(keys, name=index, **info)
        counts[name] = restored
    return counts


def _redis(uri: str) -> Any:
    import redis

    return redis.Redis.from_url(uri, socket_connect_timeout=5, socket_timeout=30)


def dump_redis(uri: str, folder: Path) -> int:
    """Every online-store key of the Redis in `uri` (DUMP and TTL) into `folder`/online.jsonl; returns keys."""
    client = _redis(uri)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with (folder / "online.jsonl").open("w") as handle:
        keys: list[bytes] = []
        for key in client.scan_iter(match=REDIS_PATTERN, count=CHUNK):
            keys.append(key)
            if len(keys) == CHUNK:
                written += _dump_keys(client, keys, handle)
                keys = []
        written += _dump_keys(client, keys, handle)
    return written


def _dump_keys(client: Any, keys: list[bytes], handle: Any) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    answers = pipe.execute() if keys else []
    written = 0
    for key, payload, ttl in zip(keys, answers[::2], answers[1::2], strict=True):
        if payload is None:  # expired or deleted since the scan
            continue
        line = {"key": _b64(key), "ttl_ms": max(int(ttl), 0), "dump": _b64(payload)}
        handle.write(json.dumps(line) + "\n")
        written += 1
    return written


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def restore_redis(uri: str, folder: Path) -> int:
    """The dumped keys back (RESTORE ... REPLACE, their TTL kept); returns keys."""
    client = _redis(uri)
    restored = 0
    pipe = client.pipeline(transaction=False)
    with (folder / "online.jsonl").open() as handle:
        for text in handle:
            line = json.loads(text)
            pipe.restore(base64.b64decode(line["key"]), line["ttl_ms"], base64.b64decode(line["dump"]), replace=True)
            restored += 1
            if restored % CHUNK == 0:
                pipe.execute()
    pipe.execute()
    return restored


def dump_services(settings: Settings, folder: Path, mongo_factory: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The servers' state these settings use into `folder`/services; returns what was dumped (for the manifest)."""
    found: dict[str, Any] = {}
    if settings.prediction_log_location.startswith("mongodb"):
        found[MONGO] = dump_mongo(settings.prediction_log_location, folder / SERVICES / MONGO, mongo_factory)
    if (settings.online_store_uri or "").startswith("redis"):
        found[REDIS] = dump_redis(settings.online_store_location, folder / SERVICES / REDIS)
    return found


def restore_services(
    settings: Settings, folder: Path, mongo_factory: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """Put `folder`/services back into the servers these settings name; returns what was restored."""
    restored: dict[str, Any] = {}
    if (folder / SERVICES / MONGO).is_dir():
        restored[MONGO] = restore_mongo(settings.prediction_log_location, folder / SERVICES / MONGO, mongo_factory)
    if (folder / SERVICES / REDIS).is_dir():
        restored[REDIS] = restore_redis(settings.online_store_location, folder / SERVICES / REDIS)
    return restored
