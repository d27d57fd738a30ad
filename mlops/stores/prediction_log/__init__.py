"""The prediction log: every prediction (input, output, model run id, UTC time, source, request id), stored.

The store is chosen by URI (setting PREDICTION_LOG_URI): `sqlite:///path` (the native default) or `mongodb://...`
(compose). `entry` is the record format, `writer` the non-blocking log callers use, `spool` what a dead store
leaves behind, `sqlite` and `mongo` the backends.
"""

from mlops.stores.base import StoreUnavailable
from mlops.stores.prediction_log.entry import PREDICTIONS, SOURCES, PredictionStore, make_entry
from mlops.stores.prediction_log.mongo import MongoStore
from mlops.stores.prediction_log.spool import Spool
from mlops.stores.prediction_log.sqlite import SQLiteStore
from mlops.stores.prediction_log.writer import PredictionLog, open_prediction_log, open_store, spool_dir_for

__all__ = [
    "PREDICTIONS",
    "SOURCES",
    "MongoStore",
    "PredictionLog",
    "PredictionStore",
    "SQLiteStore",
    "Spool",
    "StoreUnavailable",
    "make_entry",
    "open_prediction_log",
    "open_store",
    "spool_dir_for",
]
