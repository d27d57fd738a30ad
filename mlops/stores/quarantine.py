"""Entries a store refused for what they hold, set apart so that they never block the entries behind them.

A store that is down raises StoreUnavailable: its entries are spooled and replayed in order. Any other error on a
write is about the content (a string the driver cannot encode, a value the schema refuses, a bug reached by one
odd entry): `write_isolating` bisects the batch down to the entries at fault, which come back with the reason,
while the rest is written. They go to a `Quarantine`: JSON-lines files under
`<STATE_DIR>/quarantine/<store>/`, one line per entry `{"reason", "quarantined_at", "entry"}` (ensure_ascii, so even
a lone surrogate is kept exactly). Kept, counted (`count()`), inspectable and replayable with
`python -m mlops.quarantine list|show|replay` (`make quarantine`): a replay writes what the store now takes and
keeps the rest.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlops.stores.base import StoreUnavailable
from mlops.stores.ids import utc_now_iso

Refused = list[tuple[dict[str, Any], str]]
DROPPED_FILE = "dropped.count"


def write_isolating(
    write: Callable[[list[dict[str, Any]]], None], entries: list[dict[str, Any]]
) -> tuple[Refused, list[dict[str, Any]]]:
    """Write `entries`, bisecting a batch the store refuses down to the entries at fault.

    Returns (refused entries with the reason, entries left unwritten because the store went down meanwhile, in
    order). The stores ignore an id they already hold, so writing a half again after a partial write is safe.
    A batch of n entries with k bad ones costs about 2k log2(n) writes.
    """
    refused: Refused = []
    parts = [entries]
    while parts:
        part = parts.pop()
        try:
            write(part)
        except StoreUnavailable:
            return refused, [entry for rest in [part, *reversed(parts)] for entry in rest]
        except Exception as error:
            if len(part) == 1:
                refused.append((part[0], f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"))
                continue
            middle = len(part) // 2
            parts += [part[middle:], part[:middle]]  # the first half is written first: order is kept
    return refused, []


class Quarantine:
    """The refused entries of one store, as JSON-lines files whose names sort in the order they came."""

    def __init__(self, directory: Path, max_bytes: int | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes  # QUARANTINE_MAX_BYTES: past it, refused entries are counted and dropped
        self._lock = threading.Lock()
        self._counter = 0
        self._seen = -1
        self._count = 0
        self._bytes = 0

    def add(self, refused: Refused) -> int:
        """Keep `refused` (entry, reason) pairs on disk (fsynced); returns how many were kept. When the folder would
        grow past `max_bytes`, none is kept: they are counted in `dropped()` (and said by the caller), so a flood of
        odd entries cannot fill the disk the stores and the spool need."""
        if not refused:
            return 0
        now = utc_now_iso()
        text = "".join(
            json.dumps({"reason": reason, "quarantined_at": now, "entry": entry}, default=str) + "\n"
            for entry, reason in refused
        )
        if self.max_bytes is not None and self.size() + len(text) > self.max_bytes:
            self._note_dropped(len(refused))
            return 0
        with self._lock:
            self._counter += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._counter:06d}.jsonl"
            temporary = self.directory / f".{name}.tmp"
            with temporary.open("w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.directory / name)
        return len(refused)

    def clear(self) -> int:
        """Delete every held entry and the dropped count; returns how many entries were deleted."""
        held = self.count()
        for path in [*self.files(), self.directory / DROPPED_FILE]:
            path.unlink(missing_ok=True)
        return held

    def size(self) -> int:
        """Bytes held (recounted when the folder changed)."""
        self.count()
        return self._bytes

    def dropped(self) -> int:
        """Refused entries not kept because the quarantine was full, by every process, since it was last cleared."""
        try:
            return int((self.directory / DROPPED_FILE).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _note_dropped(self, count: int) -> None:
        with self._lock:
            path = self.directory / DROPPED_FILE
            temporary = self.directory / f".{DROPPED_FILE}.{os.getpid()}.tmp"
            temporary.write_text(str(self.dropped() + count))
            temporary.replace(path)

    def count(self) -> int:
        """Entries held, by every process: recounted when the folder changed (a file added or replayed)."""
        try:
            changed = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return 0
        if changed != self._seen:
            with self._lock:
                self._seen = changed
                self._count = sum(1 for _ in self._lines())
                self._bytes = sum(path.stat().st_size for path in self.files() if path.exists())
        return self._count

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    def _lines(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path in self.files():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue  # replayed by another process meanwhile
            for line in text.splitlines():
                if line.strip():
                    yield path, json.loads(line)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every quarantined line: {"reason", "quarantined_at", "entry"}, oldest first."""
        for _, line in self._lines():
            yield line

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in self.entries():
            counts[line["reason"]] = counts.get(line["reason"], 0) + 1
        return counts

    def replay(self, write: Callable[[list[dict[str, Any]]], None]) -> tuple[int, int]:
        """Write every quarantined entry the store now takes; keep the rest. Returns (written, still refused).

        Raises StoreUnavailable (the files not yet replayed are kept) when the store is down."""
        written = kept = 0
        for path in self.files():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            refused, unwritten = write_isolating(write, [line["entry"] for line in lines])
            if unwritten:
                raise StoreUnavailable(f"the store went down while replaying {path}")
            reasons = {id(entry): reason for entry, reason in refused}
            still = [(line["entry"], reasons[id(line["entry"])]) for line in lines if id(line["entry"]) in reasons]
            path.unlink()
            if still:
                self.add(still)
            written += len(lines) - len(still)
            kept += len(still)
        return written, kept


def quarantine_dir(state_dir: Path, store: str) -> Path:
    return state_dir / "quarantine" / store


def keep_refused(quarantine: Quarantine, refused: Refused, log: Any, what: str) -> None:
    """Quarantine `refused` and say so once per batch, with the first reason."""
    if refused and quarantine.add(refused) == 0:
        log.error(
            "%d %s refused by the store for their content and DROPPED: the quarantine %s is full "
            "(QUARANTINE_MAX_BYTES=%s; first reason: %s); inspect, replay or clear it with `make quarantine`",
            len(refused),
            what,
            quarantine.directory,
            quarantine.max_bytes,
            refused[0][1],
        )
    elif refused:
        log.error(
            "%d %s refused by the store for their content and quarantined in %s (first reason: %s); "
            "inspect with `make quarantine`",
            len(refused),
            what,
            quarantine.directory,
            refused[0][1],
        )
