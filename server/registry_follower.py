"""Serving that follows the registry: with RUN_ID empty, notice when the alias (`champion`, else `challenger`) moves.

The HTTP API's gunicorn master and the Kinesis consumer each hold one: `maybe_check()` is called from their own
loops (no extra thread: the master forks workers, and a thread there could hold a lock across a fork), resolves the
alias at most every MODEL_POLL_SECONDS, and calls `on_change(run_id, why)` when it names another run. That callback
is the existing hot switch (the SwitchBoard for the API, `ModelService.swap` for the consumer), so requests in
flight finish on the old model and nothing restarts. A pinned RUN_ID is never overridden; MLflow down is logged once
and the current model keeps serving.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from mlops.settings import Settings

log = logging.getLogger(__name__)


class RegistryFollower:
    def __init__(
        self,
        settings: Settings,
        current_run_id: str | None,
        on_change: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
        status_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.status_file = status_file  # the API's master writes its problem here, for the workers' /health
        self.current = current_run_id
        self.on_change = on_change
        self.clock = clock
        self._next = clock() + settings.model_poll_seconds
        self._last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return not self.settings.run_id and self.settings.model_poll_seconds > 0

    def maybe_check(self) -> bool:
        """Resolve the alias if it is time; True when the model was switched."""
        if not self.enabled or self.clock() < self._next:
            return False
        self._next = self.clock() + self.settings.model_poll_seconds
        from mlops import registry

        try:
            registry.check_mlflow(self.settings.mlflow_tracking_uri, timeout=2)
            run_id, why = registry.resolve_run_id(self.settings)
        except Exception as error:  # keep serving what we have; say it once per distinct cause
            text = f"{type(error).__name__}: {error}"
            if text != self._last_error:
                log.warning("registry not checked, still serving %s: %s", self.current, text)
                self._last_error = text
                self._write_status(f"registry not followed (MLFLOW_TRACKING_URI), still serving {self.current}: {text}")
            return False
        if self._last_error is not None:
            self._write_status(None)
        self._last_error = None
        if run_id == self.current:
            return False
        try:
            self.on_change(run_id, why)
        except Exception as error:
            log.error("alias moved to run %s but the switch failed, still serving %s: %s", run_id, self.current, error)
            return False
        log.info("registry: %s now names run %s (was %s): switched in place", why, run_id, self.current)
        self.current = run_id
        return True

    def problems(self) -> list[str]:
        return [self._last_error] if self._last_error else []

    def _write_status(self, problem: str | None) -> None:
        if self.status_file is None:
            return
        try:
            if problem is None:
                self.status_file.unlink(missing_ok=True)
            else:
                self.status_file.parent.mkdir(parents=True, exist_ok=True)
                self.status_file.write_text(json.dumps({"problem": problem, "since": time.time()}))
        except OSError:
            log.exception("cannot write the follower's status to %s", self.status_file)


def follower_problems(status_file: Path) -> list[str]:
    """What the follower of another process (the API's master) last said is wrong, if anything."""
    try:
        return [str(json.loads(status_file.read_text())["problem"])]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def follower_status_file_for(settings: Settings) -> Path:
    """Where the API master's follower says what is wrong (per replica, like the SwitchBoard file)."""
    from server.fleet import api_instance

    return settings.state_dir / "predict-api" / f"follower-status-{api_instance(settings)}.json"
