"""The online store: the latest feature row of every customer (see `base`), in SQLite or Redis."""

from mlops.settings import Settings
from mlops.stores.online.base import OnlineRow, OnlineStore, OnlineStoreUnavailable
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


def open_online_store(settings: Settings) -> OnlineStore:
    """The online store of these settings (ONLINE_STORE_URI; default SQLite under STATE_DIR)."""
    uri = settings.online_store_location
    if uri.startswith("sqlite:///"):
        return SQLiteOnlineStore(uri)
    if uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisOnlineStore(uri)
    raise OnlineStoreUnavailable(f"ONLINE_STORE_URI={uri!r}: expected sqlite:///path or redis://host:port/db")
