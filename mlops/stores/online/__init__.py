"""The online store: the latest feature row of every customer (see `base`), in SQLite or Redis."""

from mlops.stores.online.base import OnlineRow, OnlineStore, OnlineStoreUnavailable, open_online_store
from mlops.stores.online.redis import RedisOnlineStore
from mlops.stores.online.sqlite import SQLiteOnlineStore

__all__ = [
    "OnlineRow",
    "OnlineStore",
    "OnlineStoreUnavailable",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "open_online_store",
]
