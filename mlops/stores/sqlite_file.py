"""One SQLite database file as every SQLite store uses it: WAL, a schema applied once, errors as StoreUnavailable.

Reads and short writes take a connection per call: the store stays usable from any thread, and an outage (a
locked or unwritable file) shows up as an error on the call that hit it, nothing cached in a broken state. The
prediction log's writer keeps one connection instead (`write`): closing the last connection of a WAL database
checkpoints it (writes and syncs the database file), and Python holds the GIL through that close, so each batch
stalled every request thread of the worker (16% of a core idle at saturation).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from mlops.stores.base import StoreUnavailable, unavailable

T = TypeVar("T")
Schema = Callable[[sqlite3.Connection], None]
PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path:
    if not uri.startswith(PREFIX):
        raise ValueError(f"not a sqlite URI: {uri!r} (expected sqlite:///path)")
    return Path(uri.removeprefix(PREFIX))


class SQLiteFile:
    """The file behind `uri`; `schema` scripts run once (in order) on the first connection of this object.

    `what` and `setting` name the store in errors ("prediction store unavailable at PREDICTION_LOG_URI=...").
    """

    def __init__(
        self,
        uri: str,
        schema: Sequence[Schema],
        what: str,
        setting: str,
        error: type[StoreUnavailable] = StoreUnavailable,
        busy_timeout_s: float = 2.0,
    ) -> None:
        self.uri = uri
        self.path = sqlite_path(uri)
        self.schema = list(schema)
        self.what, self.setting, self.error = what, setting, error
        self.busy_timeout_s = busy_timeout_s
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.Lock()

    def down(self, error: BaseException) -> StoreUnavailable:
        return unavailable(self.what, self.setting, self.uri, error, self.error)

    def connect(self, check_same_thread: bool = True) -> sqlite3.Connection:
        """A new connection (autocommit: callers open their own transactions), the schema applied if needed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=check_same_thread
        )
        if not self._schema_ready:
            with self._schema_lock:
                try:
                    if not self._schema_ready:
                        connection.execute("PRAGMA journal_mode=WAL")
                        for script in self.schema:
                            script(connection)
                        self._schema_ready = True
                except sqlite3.Error:
                    connection.close()
                    raise
        return connection

    def run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """`action` on a connection of its own, closed after; any SQLite or file error is StoreUnavailable."""
        try:
            connection = self.connect()
        except (sqlite3.Error, OSError) as error:
            raise self.down(error) from error
        try:
            return action(connection)
        except CONTENT_ERRORS:
            raise  # about what was written, not the store: the caller isolates the entry (mlops.stores.quarantine)
        except sqlite3.Error as error:
            raise self.down(error) from error
        finally:
            connection.close()

    def write(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """`action` on the one kept writer connection (see the module docstring), under a lock."""
        with self._writer_lock:
            try:
                if self._writer is None:
                    self._writer = self.connect(check_same_thread=False)
                return action(self._writer)
            except CONTENT_ERRORS:
                raise
            except (sqlite3.Error, OSError) as error:
                self._drop_writer()  # an outage: the next write opens afresh, like every other call
                raise self.down(error) from error

    def _drop_writer(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.close()
            self._writer = None

    def close(self) -> None:
        with self._writer_lock:
            self._drop_writer()


# what SQLite says about a value, not about the file: not an outage (spooling would replay it forever)
CONTENT_ERRORS = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)


def in_transaction(connection: sqlite3.Connection, action: Callable[[sqlite3.Connection], T]) -> T:
    """`action` inside BEGIN IMMEDIATE ... COMMIT (rolled back on any exception)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = action(connection)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return result
