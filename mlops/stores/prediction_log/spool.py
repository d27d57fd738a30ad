"""Batches the store refused, kept on disk until it takes them again (nothing accepted is lost)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

STALE_CLAIM_S = 600.0
_HOST = socket.gethostname().replace("-", "_")  # the claim's suffix is <host>-<pid>


class Spool:
    """Batches the store refused, as JSON-lines files whose names sort in write order.

    A file being replayed is renamed `<name>.replaying-<host>-<pid>` first, so two processes never replay the same
    file; a claim left behind by a dead process is released on start. Replicas of a compose service share one
    state volume (`--scale serve-kinesis=N`) and cannot see each other's processes: another host's claim is
    released only once it is STALE_CLAIM_S old (a replay takes seconds).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = 0
        self._release_dead_claims()

    def _release_dead_claims(self) -> None:
        for claimed in self.directory.glob("*.jsonl.replaying-*"):
            host, _, pid_text = claimed.name.split(".replaying-", 1)[1].rpartition("-")
            pid = int(pid_text) if pid_text.isdigit() else 0
            if host in ("", _HOST):
                dead = pid == os.getpid() or not _alive(pid)
            else:
                try:
                    dead = time.time() - claimed.stat().st_ctime > STALE_CLAIM_S  # a rename sets the ctime
                except FileNotFoundError:
                    continue
            if dead:
                with contextlib.suppress(FileNotFoundError):  # another replica released it first
                    claimed.rename(claimed.with_name(claimed.name.split(".replaying-")[0]))

    def append(self, entries: Sequence[Mapping[str, Any]]) -> Path:
        self._counter += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._counter:08d}.jsonl"
        temporary = self.directory / f".{name}.tmp"
        with temporary.open("w") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        target = self.directory / name
        temporary.replace(target)
        return target

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    def empty(self) -> bool:
        """No file waiting nor being replayed (a claimed file is not `pending`, but not written yet either)."""
        return not any(not p.name.startswith(".") for p in self.directory.glob("*.jsonl*"))

    def pending_entries(self) -> int:
        return sum(sum(1 for _ in p.open()) for p in self.pending())

    def replay(self, write: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> int:
        """Write every spooled file, oldest first. `write` returns the entries it could not write (the store went
        down meanwhile): they stay in their file, which is put back, and the replay stops there. Returns the count
        of entries taken (written, or set apart by `write` for their content)."""
        written = 0
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.replaying-{_HOST}-{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another process took it
            try:
                entries = [json.loads(line) for line in claimed.read_text().splitlines() if line.strip()]
                left = write(entries)
            except BaseException:
                claimed.rename(path)
                raise
            if left:
                if len(left) < len(entries):
                    self._rewrite(claimed, left)
                claimed.rename(path)
                return written + len(entries) - len(left)
            claimed.unlink()
            written += len(entries)
        return written

    @staticmethod
    def _rewrite(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
