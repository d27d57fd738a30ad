"""Shadow scoring: a second model scores every live record off the request path, for comparison, never for answers.

SHADOW_MODEL names it: `challenger` / `champion` (the spec's registered model's alias, re-resolved every
MODEL_POLL_SECONDS so it follows new challengers) or a run id. The API and the Kinesis consumer hand each scored
batch to `submit()`, which only enqueues (a full queue drops the batch and counts it: the client never waits for
the shadow); one daemon thread per process scores it with the shadow model, through that model's own record
contract, and writes the predictions to the prediction log under the shadow's run id, source `shadow`, the same
request id and customer id. Outcomes that settle a live prediction settle its shadow twin too
(mlops/stores/outcomes/), so the realized metrics and the promotion gate see both models on the very same records.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlops.settings import Settings
from mlops.supervision import Supervised

log = logging.getLogger(__name__)

SOURCE = "shadow"
BATCH = 256  # records scored together at most (the backlog of a busy moment, not a wait)
ALIASES = ("challenger", "champion")


class ShadowScorer:
    def __init__(
        self,
        settings: Settings,
        write: Callable[[list[dict[str, Any]]], None],
        load: Callable[[str], Any] | None = None,
        queue_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.target = str(settings.shadow_model)
        self.write = write
        self.load = load or self._load
        self._queue: queue.Queue[tuple[list[dict[str, Any]], list[str]] | None] = queue.Queue(queue_size)
        self.service: Any = None
        self.scored = 0
        self.dropped = 0
        self.errors = 0
        self._resolved_at = -1e18
        self._thread = Supervised("shadow-scorer", self._run)
        self._thread.start()

    # ------------------------------------------------------------------ request path: enqueue only
    def submit(self, records: Sequence[Mapping[str, Any]], request_ids: str | Sequence[str]) -> None:
        ids = [request_ids] * len(records) if isinstance(request_ids, str) else list(request_ids)
        try:
            self._queue.put_nowait(([dict(r) for r in records], ids))
        except queue.Full:
            self.dropped += len(records)

    # ------------------------------------------------------------------ the background thread
    def _load(self, run_id: str) -> Any:
        from mlops.model_service import ModelService, load_bundle

        return ModelService(load_bundle(self.settings, run_id), source=f"shadow {self.target}", allow_unknown=True)

    def _run_id(self) -> str:
        if self.target.lower() not in ALIASES:
            return self.target
        from mlflow.tracking import MlflowClient

        from mlops import registry

        version = MlflowClient(self.settings.mlflow_tracking_uri).get_model_version_by_alias(
            registry.model_name_for(self.settings), self.target.lower()
        )
        return str(version.run_id)

    def _ensure_model(self) -> Any:
        due = time.monotonic() - self._resolved_at >= max(self.settings.model_poll_seconds, 1.0)
        if self.service is None or (self.target.lower() in ALIASES and due):
            self._resolved_at = time.monotonic()
            run_id = self._run_id()
            if self.service is None or self.service.run_id != run_id:
                self.service = self.load(run_id)
                log.info("shadow model: run %s (%s)", run_id, self.target)
        return self.service

    def _run(self) -> None:
        from mlops.stores.prediction_log import make_entry

        while True:
            self._thread.beat()
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            records, ids = list(item[0]), list(item[1])
            stopping = False
            while len(records) < BATCH:  # what piled up meanwhile: one encode and one predict for all of it
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                records.extend(more[0])
                ids.extend(more[1])
            try:
                service = self._ensure_model()
                chances = service.predict_records(service.validate(records, indexed=True))
                id_column = service.spec.id_column
                entries = [
                    make_entry(r, p, service.run_id, SOURCE, rid, customer_id=r.get(id_column) if id_column else None)
                    for r, p, rid in zip(records, chances, ids, strict=True)
                ]
                self.write(entries)
                self.scored += len(entries)
            except Exception as error:  # the shadow never hurts the live path: count it, log it once in a while
                self.errors += len(records)
                if self.errors <= len(records) or self.errors % 1000 < len(records):
                    log.warning("shadow scoring failed (%d records so far): %s", self.errors, error)
            if stopping:
                return

    def problems(self) -> list[str]:
        return self._thread.problems(max_silence_s=120.0)  # a model load may take a while

    def close(self) -> None:
        self._thread.stop()
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:
            return
        self._thread.join(timeout=5)


def shadow_for(settings: Settings, sinks: Sequence[Any]) -> ShadowScorer | None:
    """The shadow scorer of these settings (None without SHADOW_MODEL), writing to the log sinks of `sinks`."""
    if not settings.shadow_model:
        return None
    from server.sinks import log_sinks, submit_all

    logs = log_sinks(sinks)
    return ShadowScorer(settings, lambda entries: submit_all(logs, entries))
