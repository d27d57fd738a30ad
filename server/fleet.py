"""The API's replicas as one fleet: each replica's own files, and the reload order they all follow.

Replicas share one state folder (natively STATE_DIR; in compose the predict-api volume every `--scale` replica
mounts), so what belongs to one server (its SwitchBoard, its Prometheus multiprocess folder, its follower's status)
is named by `api_instance`: host and port, unique natively (one port per replica) and in compose (one hostname per
container).

A hot reload (`POST /admin/reload`) reaches one replica through the gateway; the worker that made it also writes a
fleet order (one small JSON file, replaced by rename). Every other replica's master sees it within about a second
(its loop runs once a second) and does what SIGHUP does: re-read the settings, resolve and cache the model, switch
its workers in place. A master that starts takes the order on the file as already seen: like SIGHUP and a fresh
start, its settings decide (RUN_ID, else the registry alias, which every replica follows anyway).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from mlops.atomic_file import write_atomic
from mlops.settings import Settings


def api_instance(settings: Settings) -> str:
    """This API server's name among the replicas sharing its state folder."""
    return f"{socket.gethostname()}-{settings.api_port}"


def fleet_file_for(settings: Settings) -> Path:
    return settings.state_dir / "predict-api" / "fleet-order.json"


class FleetOrders:
    """The newest reload order of the fleet, and which ones this replica has seen."""

    def __init__(self, path: Path, origin: str) -> None:
        self.path = path
        self.origin = origin
        self.seen = 0
        self._stamp: tuple[int, int] | None = None

    def _read(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            order = json.loads(self.path.read_text())
            if isinstance(order, dict) and int(order.get("generation", 0)) > 0:
                return order
        return None

    def start(self) -> None:
        """A fresh master: the order already on file is not for it (its settings decide)."""
        order = self._read()
        self.seen = int(order["generation"]) if order else 0

    def publish(self, run_id: str | None, source: str) -> dict[str, Any]:
        current = self._read()
        order = {
            "generation": max(int(current["generation"]) if current else 0, self.seen) + 1,
            "run_id": run_id,
            "source": source,
            "origin": self.origin,
            "at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(order))
        self.seen = order["generation"]
        return order

    def pending(self) -> dict[str, Any] | None:
        """A newer order made by another replica, once (a stat per call when nothing changed)."""
        try:
            found = self.path.stat()
        except OSError:
            return None
        stamp = (found.st_ino, found.st_mtime_ns)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        order = self._read()
        if order is None or int(order["generation"]) <= self.seen:
            return None
        self.seen = int(order["generation"])
        return None if order.get("origin") == self.origin else order
