"""What one API worker holds: settings, the served model (loaded in the background if need be), its Scorer.

The model may not be there when the worker starts (MLflow down and nothing cached): it is then loaded off the
request path, retried every LOAD_RETRY_S, and /health says why meanwhile. A hot reload (`POST /admin/reload`, or
SIGHUP to the gunicorn master) is published on the SwitchBoard the workers of one server share, and each worker
applies it before its next request (`follow_switch`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.model_service import ModelService, load_bundle, resolve_for_reload
from mlops.settings import Settings
from server.api.metrics import observe_predictions, publish_model
from server.scoring import Scorer
from server.sinks import PredictionSink, close_all

if TYPE_CHECKING:
    from server.shadow import ShadowScorer
    from server.switchboard import SwitchBoard

log = logging.getLogger(__name__)

LOAD_RETRY_S = 5.0


class ApiState:
    """The model slot of one worker (see server.scoring.ModelSlot) and the Scorer every blueprint calls."""

    def __init__(self, settings: Settings, service: ModelService | None, sinks: Sequence[PredictionSink]):
        self.settings = settings
        self.service = service
        self.switch: SwitchBoard | None = None  # shared by the workers of one server (None in-process)
        self._switch_lock = threading.Lock()
        self.load_error: str | None = None
        self.internal_errors = 0  # true bugs answered with a 500; tests assert bad inputs never get here
        self._stop = threading.Event()
        self.metrics_registry: Any = None
        self.follower_status: Path | None = None  # the master's follower status file, under gunicorn
        self.scorer = Scorer(self, sinks, source="http", observe=observe_predictions)
        if service is not None:
            publish_model(service)

    @property
    def sinks(self) -> list[PredictionSink]:
        return self.scorer.sinks

    @property
    def shadow(self) -> ShadowScorer | None:
        return self.scorer.shadow

    @shadow.setter
    def shadow(self, scorer: ShadowScorer | None) -> None:
        self.scorer.shadow = scorer

    def problems(self) -> list[str]:
        """Why this worker is degraded (empty when well): its sinks, its shadow, the registry follower."""
        from server.sinks import sink_problems

        found = sink_problems(self.sinks)
        if self.shadow is not None:
            found += self.shadow.problems()
        if self.follower_status is not None:
            from server.registry_follower import follower_problems

            found += follower_problems(self.follower_status)
        return found

    def load_in_background(self) -> None:
        """Load the model off the request path, retrying until MLflow (or the cache) gives one."""

        def load() -> None:
            while not self._stop.is_set():
                try:
                    self.service = ModelService.from_settings(self.settings)
                except Exception as error:  # MLflow down, no alias yet, ...: /health says why
                    if self._stop.is_set():
                        return  # closed meanwhile (worker exit): nothing to say, maybe no log stream left
                    first_line = (str(error).strip().splitlines() or [""])[0][:500]
                    self.load_error = f"{type(error).__name__}: {first_line}"
                    log.warning("model not loaded yet (retrying in %.0fs): %s", LOAD_RETRY_S, self.load_error)
                    self._stop.wait(LOAD_RETRY_S)
                    continue
                self.load_error = None
                publish_model(self.service)
                self.follow_switch()
                return

        threading.Thread(target=load, name="model-loader", daemon=True).start()

    def follow_switch(self) -> None:
        """Apply a reload another worker published (a memory read per call when nothing changed)."""
        if self.switch is None or self.service is None or self.switch.pending() is None:
            return
        with self._switch_lock:
            order = self.switch.pending()
            if order is None or self.service is None:
                return
            try:
                if order["run_id"] != self.service.run_id:
                    self.service.swap(load_bundle(self.settings, order["run_id"]), str(order.get("source", "reload")))
                    publish_model(self.service)
            except Exception as error:  # keep serving the model we have; say why once per order
                log.error(
                    "hot reload to run %s failed, still serving %s: %s", order["run_id"], self.service.run_id, error
                )
            self.switch.applied(order)

    def reload(self, fresh: Settings) -> dict[str, Any]:
        """Re-resolve and load the model of `fresh` settings, publish it to the other workers, then swap ours."""
        bundle, source = resolve_for_reload(fresh)
        with self._switch_lock:
            previous = self.service.run_id if self.service else None
            order = self.switch.publish(bundle.run_id or "", source) if self.switch is not None else None
            if self.service is None:
                self.service = ModelService(bundle, source, allow_unknown=fresh.accept_unknown_fields)
            else:
                self.service.swap(bundle, source)
            if order is not None and self.switch is not None:
                self.switch.applied(order)
            publish_model(self.service)
        return {
            "model_run_id": bundle.run_id,
            "previous_run_id": previous,
            "source": source,
            "generation": order["generation"] if order else None,
        }

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.shadow is not None:
            self.shadow.close()
        close_all(self.sinks, timeout)
