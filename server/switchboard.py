"""SwitchBoard: how the workers of one API server agree on the model after a hot reload (one small file)."""

from __future__ import annotations

import contextlib
import json
import mmap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.atomic_file import write_atomic

COUNTER_BYTES = 8


class SwitchBoard:
    """Keeps every worker of one API on the model chosen by the last reload: one small file, checked per request.

    Why checked on each request rather than by a signal or a polling thread: a client that got an answer from the
    new model can never get the old one afterwards from another worker, because that worker sees the order
    (published before the first new answer) before it answers. The order is a JSON file replaced by rename, so a
    reader sees the old order or the new one, never half. Beside it, an 8-byte generation counter that every
    worker maps into memory (`reset` by the master before it forks): the per-request check is a memory read, not
    a system call. Under load a system call there was a place where the request thread gave up the GIL and
    waited to get it back; without the counter file (an app made in-process) the check falls back to a `stat`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counter_path = path.with_name(path.name + ".generation")
        self._counter: mmap.mmap | None = None
        self._seen: tuple[int, int] | None = None
        self.generation = 0

    def _stamp(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return (found.st_ino, found.st_mtime_ns)

    def _mapped(self) -> mmap.mmap | None:
        if self._counter is None:
            try:
                with self.counter_path.open("r+b") as handle:
                    self._counter = mmap.mmap(handle.fileno(), COUNTER_BYTES)
            except (OSError, ValueError):  # no counter file (in-process) or a short one
                return None
        return self._counter

    def pending(self) -> dict[str, Any] | None:
        """The newest reload order if this worker has not applied it yet (cheap when nothing changed)."""
        counter = self._mapped()
        if counter is not None:
            if int.from_bytes(counter[:COUNTER_BYTES], "little") <= self.generation:
                return None
            stamp = self._stamp()
        else:
            stamp = self._stamp()
            if stamp is None or stamp == self._seen:
                return None
        try:
            order = json.loads(self.path.read_text())
            generation = int(order["generation"])
            str(order["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if generation <= self.generation:
            self._seen = stamp
            return None
        order["_stamp"] = stamp
        return order

    def applied(self, order: Mapping[str, Any]) -> None:
        self.generation = int(order["generation"])
        self._seen = order.get("_stamp") or self._stamp()

    def publish(self, run_id: str, source: str) -> dict[str, Any]:
        """Write the next order (generation + 1) atomically, then the counter; the caller swaps its own model
        right after."""
        current = 0
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            current = int(json.loads(self.path.read_text())["generation"])
        order: dict[str, Any] = {"generation": max(current, self.generation) + 1, "run_id": run_id, "source": source}
        write_atomic(self.path, json.dumps(order))
        self._write_counter(order["generation"])  # after the order: a reader that sees it finds the order there
        order["_stamp"] = self._stamp()
        return order

    def _write_counter(self, generation: int) -> None:
        if not self.counter_path.exists():
            return  # in-process: readers stat the order file
        with self.counter_path.open("r+b") as handle:  # in place: the workers map this very file
            handle.write(generation.to_bytes(COUNTER_BYTES, "little"))

    def reset(self) -> None:
        """A new master, before it forks: no order, counter 0 (written in place or created)."""
        self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if self.counter_path.exists() else "wb"
        with self.counter_path.open(mode) as handle:
            handle.write(bytes(COUNTER_BYTES))

    def clear(self) -> None:
        """A fresh start (new master, SIGHUP): settings decide again, not an older reload."""
        self.path.unlink(missing_ok=True)
