"""GET /health, /metrics and /openapi.json: what probes, Prometheus and clients read (open, no key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response

from mlops.registry import model_name_for
from server.api.errors import ApiError
from server.api.openapi import openapi_document, v2_openapi_paths

if TYPE_CHECKING:
    from server.api.state import ApiState


def meta_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("meta", __name__)
    settings = state.settings

    @routes.get("/health")
    def health() -> tuple[dict[str, Any], int]:
        state.follow_switch()
        current = state.service
        if current is None:
            return {"status": "loading", "reason": state.load_error or "the model is still loading"}, 503
        problems = state.problems()
        answer = {
            "status": "degraded" if problems else "ok",
            "model_run_id": current.run_id,
            "source": current.source,
            "spec": current.spec.name,
        }
        if problems:
            answer["problems"] = problems  # still serving (200): what is wrong behind it, for people and alerts
        return answer, 200

    @routes.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return Response(generate_latest(state.metrics_registry or REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    @routes.get("/openapi.json")
    def openapi() -> Any:
        current = state.service
        if current is None:
            raise ApiError(503, "model not loaded", "the schema comes from the model's spec; it is still loading")
        document = openapi_document(current.spec, settings.max_batch_records, settings.max_body_bytes)
        document["paths"].update(v2_openapi_paths(current.spec, model_name_for(settings, current.spec)))
        return document

    return routes
