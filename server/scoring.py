"""The one scoring step every surface calls: switch -> validate -> predict -> metrics -> log -> shadow.

Like MLServer's DataPlane shared by its REST, gRPC and Kafka servers: HTTP `/predict`, the V2 infer, scoring by
customer id and the Kinesis consumer all hand records to a `Scorer`, so a record is validated by the same contract,
scored by the same model, counted, logged and shadow-scored alike whichever way it came. What differs per surface
is only how it reads its input and writes its answer (and how it reports a bad record: a 422, a 409 for stale
online features, a dead letter).

Two phases, because the Kinesis consumer must write its results before anything is logged (a batch whose results
could not be written is read again from its checkpoint, and logging it first would log it twice):
`predict` (model + metrics) and `publish` (prediction log and drift sinks + shadow). `score` does both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from mlops.explain import explain_records
from mlops.spec import FeatureSpec
from mlops.stores.ids import utc_now_iso
from mlops.stores.prediction_log import make_entry
from server.sinks import PredictionSink, submit_all

if TYPE_CHECKING:
    from mlops.model import ModelBundle
    from mlops.model_service import ModelService
    from server.shadow import ShadowScorer


class ModelNotLoaded(RuntimeError):
    """No model yet (MLflow down and nothing cached, no alias set): the message says why."""


class ModelSlot(Protocol):
    """Where the served model lives: the API's state (loaded in the background, switched by reloads) or the Kinesis
    consumer itself. `follow_switch` applies a reload another worker published (a no-op where there is none)."""

    service: ModelService | None
    load_error: str | None

    def follow_switch(self) -> None: ...


class Scored(NamedTuple):
    """What one scoring step produced: the validated records, their probabilities, the run and spec behind them, and
    the very model (`bundle`) that answered, so reasons asked for come from it even if a swap happened since."""

    records: list[dict[str, Any]]
    probabilities: np.ndarray  # float64, in the records' order
    run_id: str
    spec: FeatureSpec
    bundle: ModelBundle

    def explain(self, k: int | Sequence[int]) -> list[dict[str, Any] | None]:
        """Each record's k top reasons (mlops.explain), or one k per record; None where k is 0."""
        return explain_records(self.bundle, self.records, k)


Observe = Callable[[np.ndarray], None]  # a surface's prediction metrics


class Scorer:
    """One per surface and process; thread-safe (the model swaps atomically, sinks and the shadow only enqueue)."""

    def __init__(
        self,
        slot: ModelSlot,
        sinks: Sequence[PredictionSink],
        source: str,
        shadow: ShadowScorer | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.slot = slot
        self.sinks: list[PredictionSink] = list(sinks)
        self.source = source  # the prediction log's `source`: http, kinesis, batch
        self.shadow = shadow
        self.observe = observe

    def model(self) -> ModelService:
        """The model to score with now, after applying any published switch; ModelNotLoaded if there is none."""
        self.slot.follow_switch()
        current = self.slot.service
        if current is None:
            raise ModelNotLoaded(self.slot.load_error or "the model is still loading")
        return current

    def score(self, records: Sequence[Any], request_ids: str | Sequence[str], indexed: bool) -> Scored:
        """The whole step for records as a client sent them; the first invalid record raises RecordError
        (`indexed`: its position goes into the error)."""
        service = self.model()
        scored = self.predict(service, service.validate(records, indexed=indexed))
        self.publish(scored, request_ids)
        return scored

    def predict(self, service: ModelService, valid: list[dict[str, Any]]) -> Scored:
        """Probabilities of validated records and the run that made them (one call: a swap cannot split them)."""
        probabilities, bundle = service.predict_with_bundle(valid)
        if self.observe is not None and len(valid):
            self.observe(probabilities)
        return Scored(valid, probabilities, bundle.run_id or "", bundle.spec, bundle)

    def publish(
        self, scored: Scored, request_ids: str | Sequence[str], prediction_ids: Sequence[str] | None = None
    ) -> None:
        """Into the prediction log and the drift service, then to the shadow model; each only enqueues.

        `prediction_ids`: the log's ids, where a replay must log the same entries (Kinesis); else new ones."""
        records = scored.records
        if not records:
            return
        ids = [request_ids] * len(records) if isinstance(request_ids, str) else list(request_ids)
        if self.sinks:
            id_column = scored.spec.id_column
            answered = utc_now_iso()  # one call, one moment: every record of a batch is answered at once
            entries = [
                make_entry(
                    record,
                    probability,
                    scored.run_id,
                    self.source,
                    request_id,
                    answered,
                    customer_id=record.get(id_column) if id_column else None,
                    prediction_id=prediction_id,
                )
                for record, probability, request_id, prediction_id in zip(
                    records, scored.probabilities, ids, prediction_ids or [None] * len(records), strict=True
                )
            ]
            submit_all(self.sinks, entries)
        if self.shadow is not None:
            self.shadow.submit(records, ids)  # enqueued only: the answer never waits for the shadow
