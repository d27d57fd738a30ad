"""A real redis-server (Debian's package) for a test: a free loopback port, nothing persisted, stopped after."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from native.throwaway import free_port, start_process, stop_process
from tests.support.processes import system_binary


@contextmanager
def redis_server(folder: Path, password: str | None = None) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Yields (its URI, the process); with `password`, authenticated with protected mode on, as compose runs it."""
    import redis

    port = free_port()
    command = [system_binary("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    if password:
        command += ["--requirepass", password, "--protected-mode", "yes"]
    process = start_process(command, folder / "redis.log")
    try:
        client = redis.Redis(port=port, password=password, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as error:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(
                        f"redis-server did not answer on :{port}: {(folder / 'redis.log').read_text()}"
                    ) from error
                time.sleep(0.1)
        yield (f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"), process
    finally:
        stop_process(process)
