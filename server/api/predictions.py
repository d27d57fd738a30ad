"""GET /predictions/<request_id>: decision replay - what was answered, by which model run, from which input, and why.

The prediction log holds the validated input and the run that answered; the reasons are recomputed from that input
with that very run's model (loaded from the model cache, else MLflow), and the score is recomputed beside the logged
one, so a replay shows it reproduces. `?model=champion` adds what today's champion would answer for the same input;
`?explain=k` (default: every feature) bounds the reasons. A batch request logged one entry per record: all come back,
in order. Read with the `predict` scope, like the scores themselves.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flask import Blueprint, request
from mlflow.exceptions import MlflowException

from mlops import registry
from mlops.aws import ServiceUnavailable
from mlops.explain import explain_records
from mlops.model import ModelBundle
from mlops.stores.base import StoreUnavailable
from mlops.stores.prediction_log import open_store
from server.api.errors import ApiError
from server.api.predict import explain_asked

if TYPE_CHECKING:
    from server.api.state import ApiState

log = logging.getLogger(__name__)

MODELS_KEPT = 3  # runs a replay keeps loaded besides the served one (old runs asked about again)
CHAMPION = "champion"


def predictions_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("predictions", __name__)
    lock = threading.Lock()
    holder: dict[str, Any] = {}
    models: OrderedDict[str, ModelBundle] = OrderedDict()

    def store() -> Any:
        with lock:
            if "store" not in holder:
                holder["store"] = open_store(state.settings.prediction_log_uri)
            return holder["store"]

    def bundle_of(run_id: str) -> ModelBundle:
        served = state.service
        if served is not None and served.run_id == run_id:
            return served.bundle
        with lock:
            if run_id in models:
                models.move_to_end(run_id)
                return models[run_id]
        from mlops.model_service import load_bundle

        try:
            bundle = load_bundle(state.settings, run_id)
        except ServiceUnavailable as error:
            raise ApiError(503, "model registry unavailable", f"cannot load run {run_id}: {error}") from None
        except MlflowException as error:
            if not registry.is_absent(error):
                raise ApiError(503, "model registry unavailable", f"cannot load run {run_id}: {error}") from None
            raise ApiError(410, "model gone", f"run {run_id} is not in MLflow any more: {error}") from None
        except Exception as error:  # no model folder in the run, an unreadable booster
            raise ApiError(
                410, "model gone", f"run {run_id} cannot be loaded any more: {type(error).__name__}: {error}"
            ) from None
        with lock:
            models[run_id] = bundle
            while len(models) > MODELS_KEPT:
                models.popitem(last=False)
        return bundle

    def champion_run() -> str:
        from mlflow import MlflowClient

        try:
            registry.check_mlflow(state.settings.mlflow_tracking_uri, timeout=3)
            client = MlflowClient(state.settings.mlflow_tracking_uri)
            spec = state.service.spec if state.service is not None else None
            version = registry.alias_version(client, registry.model_name_for(state.settings, spec), CHAMPION)
        except ServiceUnavailable as error:
            raise ApiError(503, "model registry unavailable", str(error)) from None
        except MlflowException as error:
            raise ApiError(503, "model registry unavailable", f"MLflow refused the alias lookup: {error}") from None
        if version is None:
            raise ApiError(404, "no champion", "the registered model has no 'champion' alias yet", "model")
        return str(version.run_id)

    @routes.get("/predictions/<request_id>")
    def replay(request_id: str) -> tuple[dict[str, Any], int]:
        explain = explain_asked(request.args.get("explain", "all"))
        compare = request.args.get("model")
        if compare not in (None, CHAMPION):
            raise ApiError(400, "invalid model", f"model may only be '{CHAMPION}', got {compare!r}", "model")
        try:
            entries = store().by_request(request_id, state.settings.max_batch_records)
        except StoreUnavailable as error:
            raise ApiError(503, "prediction store unavailable", str(error)) from None
        entries = [e for e in entries if e.get("source") != "shadow"]
        if not entries:
            raise ApiError(
                404, "unknown request", f"no prediction is logged under request id {request_id!r}", "request_id"
            )
        champion = bundle_of(champion_run()) if compare else None
        decisions = []
        for entry in entries:
            bundle = bundle_of(entry["model_run_id"])
            features = entry["input"]
            replayed = float(bundle.predict_encoded(bundle.encoder.encode_records([features]))[0])
            decision: dict[str, Any] = {
                "prediction_id": entry["prediction_id"],
                "answered_at": entry["timestamp"].isoformat(),
                "source": entry["source"],
                "customer_id": entry.get("customer_id"),
                "model_run_id": entry["model_run_id"],
                "input": features,
                "churn chance": entry["prediction"],
                "replayed churn chance": replayed,
                "explanation": explain_records(bundle, [features], explain)[0] if explain else None,
            }
            if champion is not None:
                chance = float(champion.predict_encoded(champion.encoder.encode_records([features]))[0])
                decision["champion"] = {
                    "model_run_id": champion.run_id,
                    "churn chance": chance,
                    "explanation": explain_records(champion, [features], explain)[0] if explain else None,
                }
            decisions.append(decision)
        return {"request_id": request_id, "predictions": decisions}, 200

    return routes
