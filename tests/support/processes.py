"""Sizes of the session's training run and finding the Debian programs the tests start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from native.throwaway import (  # noqa: F401  (tests import these from here)
    VENV_BIN,
    free_port,
    start_process,
    start_registry_servers,
    stop_process,
    wait_for_http,
)

TEST_ROWS = 2000


TEST_TRIALS = 3


def system_binary(name: str, package: str, *alternatives: str) -> str:
    """The path of a Debian package's program the tests need; a clear failure, not a skip, when it is missing:
    `make install` (as root) installs it, and a suite that silently skipped it would prove nothing."""
    import shutil

    for candidate in (name, *alternatives):
        found = shutil.which(candidate) or next(
            (p for p in (f"/usr/sbin/{candidate}", f"/usr/bin/{candidate}") if Path(p).exists()), None
        )
        if found is not None:
            return found
    pytest.fail(f"{name} not found: run `make system-packages` as root, or `sudo apt-get install -y {package}`")


def which(binary: str) -> str | None:
    return shutil.which(binary)
