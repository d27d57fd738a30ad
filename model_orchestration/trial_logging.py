"""Hyperopt trials logged to MLflow from a background thread, so tuning never waits on the tracking server.

Why: each trial is a child run (create, log params and metrics, terminate: three REST calls, each a few SQLite
commits on the server). On these machines that cost 0.5-1.5 s per trial while the fit itself took about one
second, so the flow ran at several times a bare hyperopt loop (bench/bench_train.py). Fits are CPU work and the
logging is waiting on the server: done side by side, the logging costs almost nothing. The trial runs keep their
real start and end times (taken around the fit), so MLflow's UI shows what each trial took.

Nothing is lost: `close` waits until every trial is logged and raises the first logging error, so a dead MLflow
fails the flow as it did when trials were logged inline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    number: int
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    start_ms: int
    end_ms: int


class TrialLogger:
    """A queue of finished trials and one thread that writes each as a child run of `parent_run_id`."""

    def __init__(self, client: Any, experiment_id: str, parent_run_id: str) -> None:
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self._queue: queue.SimpleQueue[Trial | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.logged = 0
        self._thread = threading.Thread(target=self._run, name="mlflow-trial-logger", daemon=True)
        self._thread.start()

    def submit(self, trial: Trial) -> None:
        if self.error is not None:  # fail fast: no point tuning on while MLflow refuses every trial
            raise RuntimeError(f"logging trials to MLflow failed: {self.error}") from self.error
        self._queue.put(trial)

    def close(self, timeout: float = 300.0) -> int:
        """Wait until every submitted trial is logged; the number logged. Raises the first logging error."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"MLflow did not take the trials within {timeout:.0f} s ({self.logged} logged)")
        if self.error is not None:
            raise RuntimeError(f"logging trials to MLflow failed: {self.error}") from self.error
        return self.logged

    def _run(self) -> None:
        import mlflow

        while (trial := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain; close() reports the error
            try:
                run = self.client.create_run(
                    self.experiment_id,
                    start_time=trial.start_ms,
                    tags={"mlflow.parentRunId": self.parent_run_id, "trial": str(trial.number), "kind": "trial"},
                    run_name=f"trial-{trial.number:03d}",
                )
                self.client.log_batch(
                    run.info.run_id,
                    params=[mlflow.entities.Param(k, str(v)) for k, v in sorted(trial.params.items())],
                    metrics=[mlflow.entities.Metric(k, v, trial.end_ms, 0) for k, v in trial.metrics.items()],
                )
                self.client.set_terminated(run.info.run_id, end_time=trial.end_ms)
                self.logged += 1
            except BaseException as error:  # MLflow down or refusing: remembered, raised by submit/close
                log.error("logging trial %d to MLflow failed: %s", trial.number, error)
                self.error = error
