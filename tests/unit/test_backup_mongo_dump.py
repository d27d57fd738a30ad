"""The MongoDB half of mlops.backup.services, one adapter on mongomock: collections dumped as mongodump's BSON with
their indexes and restored whole (no MongoDB server runs on these machines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import mongomock

from mlops.backup.services import dump_mongo, restore_mongo


def test_mongodb_collections_round_trip_with_their_ttl_index(tmp_path: Path) -> None:
    uri = "mongodb://localhost:27017/churn"
    shared = mongomock.MongoClient(tz_aware=True)

    def client_factory(*_: object, **__: object) -> mongomock.MongoClient:
        return shared

    database = shared["churn"]
    now = datetime.now(UTC).replace(microsecond=0)  # younger than the TTL (mongomock applies it on reads)
    documents = [
        {"_id": f"p{i}", "timestamp": now - timedelta(seconds=i), "input": {"age": i}, "prediction": i / 100}
        for i in range(2500)
    ]
    database["predictions"].insert_many(documents)
    database["predictions"].create_index("timestamp", expireAfterSeconds=86_400)
    database["outcomes"].insert_one({"_id": "o1", "status": "settled"})
    counts = dump_mongo(uri, tmp_path / "dump", client_factory)
    assert counts == {"outcomes": 1, "predictions": 2500}
    assert (tmp_path / "dump" / "predictions.bson").stat().st_size > 2500 * 40

    database["predictions"].drop()
    database["outcomes"].delete_many({})
    database["outcomes"].insert_one({"_id": "stale", "status": "unknown"})  # replaced, not merged
    assert restore_mongo(uri, tmp_path / "dump", client_factory) == counts
    assert list(database["predictions"].find().sort("_id", 1)) == sorted(documents, key=lambda d: d["_id"])
    assert [d["_id"] for d in database["outcomes"].find()] == ["o1"]
    ttl = [i for i in database["predictions"].index_information().values() if "expireAfterSeconds" in i]
    assert ttl and ttl[0]["expireAfterSeconds"] == 86_400 and ttl[0]["key"] == [("timestamp", 1)]
