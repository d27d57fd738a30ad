"""Replace a small file so that every reader sees the old content or the new, never a torn one.

One implementation for every marker, checkpoint, switch order and report page: the temporary file has a unique
name (`mkstemp`), because several gunicorn workers write the same marker at start-up, and a shared temporary name
let one worker's rename take the other's file away ("No such file or directory: '.last-served.json.tmp'").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a temporary file in the same folder, fsync, rename over `path`, fsync the folder (a durable rename).

    `mode`: mkstemp creates 0600, which other users cannot read: the reports' nginx (another user, in its own
    container) answered 403 for every page written that way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
