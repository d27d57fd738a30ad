"""The Open Inference Protocol (KServe V2) beside our own API, so KServe, MLServer and Triton clients call us unchanged.

    GET  /v2/health/live, /v2/health/ready             open, like /health
    GET  /v2                                           server metadata
    GET  /v2/models/<name>[/versions/<v>]              model metadata: one input per feature of the served spec
    GET  /v2/models/<name>[/versions/<v>]/ready
    POST /v2/models/<name>[/versions/<v>]/infer        churn chance of every row

The request parameter `explain` (k, or "all") adds the output `explanation`: one JSON text per row with the k top
reasons (mlops.explain), as MLServer carries structured values in a BYTES tensor.
<name> is the served registered model (MODEL_NAME, else the spec's own); <v>, when given, must be the served run id.
The request's rows (server.api.v2_tensors) go through the same Scorer as POST /predict, so a record answers, logs
and fails alike on both. A bad row is a 422 naming the column (`field`) and the row (`index`). Error bodies keep our
shape, whose `error` is the V2 one's. The request's `id`, when sane and no X-Request-ID header came, becomes the
request id the prediction is logged under (so an outcome can name it); the answer's `id` is the request id either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g

from mlops import json_text
from mlops.contract import RecordError
from mlops.outcomes import SANE_REQUEST_ID
from mlops.registry import model_name_for
from server.api.body import read_body
from server.api.errors import ApiError, invalid_record
from server.api.predict import explain_asked
from server.api.v2_tensors import (
    ALL,
    EXPLANATION,
    OUTPUT,
    PROTOCOL_VERSION,
    explain_parameter,
    explanation_output,
    input_metadata,
    invalid,
    parse_request,
    request_rows,
    wanted_outputs,
)

if TYPE_CHECKING:
    from server.api.state import ApiState


def v2_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("v2", __name__)
    scorer = state.scorer

    def served(name: str, version: str | None) -> tuple[Any, str]:
        current = state.service
        if current is None:
            raise ApiError(503, "model not loaded", state.load_error or "the model is still loading")
        served_name = model_name_for(state.settings, current.spec)
        if name != served_name:
            raise ApiError(
                404, "model not found", f"this server serves the model '{served_name}', not '{name}'", "name"
            )
        if version is not None and version != current.run_id:
            raise ApiError(
                404, "model version not found", f"this server serves version {current.run_id} (the run id)", "version"
            )
        return current, served_name

    @routes.get("/v2/health/live")
    def live() -> dict[str, Any]:
        return {"live": True}

    @routes.get("/v2/health/ready")
    def ready() -> tuple[dict[str, Any], int]:
        state.follow_switch()
        return {"ready": state.service is not None}, 200 if state.service is not None else 503

    @routes.get("/v2")
    def server_metadata() -> dict[str, Any]:
        return {"name": "churn-mlops", "version": PROTOCOL_VERSION, "extensions": []}

    @routes.get("/v2/models/<name>")
    @routes.get("/v2/models/<name>/versions/<version>")
    def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        current, served_name = served(name, version)
        return {
            "name": served_name,
            "versions": [current.run_id],
            "platform": "xgboost",
            "parameters": {"content_type": "pd", "spec": current.spec.name},
            "inputs": input_metadata(current.spec),
            "outputs": [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}],
        }

    @routes.get("/v2/models/<name>/ready")
    @routes.get("/v2/models/<name>/versions/<version>/ready")
    def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        _, served_name = served(name, version)
        return {"name": served_name, "ready": True}

    @routes.post("/v2/models/<name>/infer")
    @routes.post("/v2/models/<name>/versions/<version>/infer")
    def infer(name: str, version: str | None = None) -> Response:
        _, served_name = served(name, version)
        body = parse_request(read_body())
        rows = request_rows(body, state.settings.max_batch_records)
        wanted = wanted_outputs(body)
        explain = explain_asked(explain_parameter(body, wanted), "parameters.explain")
        given_id = body.get("id")
        ours = g._get_current_object()  # the request's own `g`, once (each `g.x` goes through a proxy)
        if given_id is not None and not isinstance(given_id, str):
            raise ApiError(400, "invalid inference request", "id must be a string", "id")
        if given_id and not ours.request_id_sent and SANE_REQUEST_ID.match(given_id):
            ours.request_id = given_id  # logged under the client's own id
        try:
            scored = scorer.score(rows, ours.request_id, indexed=True)
        except RecordError as error:
            raise invalid_record(error) from None
        records, probabilities, run_id = scored.records, scored.probabilities, scored.run_id
        id_column = scored.spec.id_column
        if wanted is not ALL:
            unknown = sorted(wanted - ALL - {id_column, EXPLANATION})
            if unknown:
                answers = f"'{OUTPUT}', '{EXPLANATION}' and the id"
                invalid(f"unknown output(s) {unknown}; this model answers {answers}", "outputs")
        outputs: list[dict[str, Any]] = []
        if OUTPUT in wanted:
            outputs.append(
                {"name": OUTPUT, "shape": [len(records)], "datatype": "FP64", "data": probabilities.tolist()}
            )
        if id_column and id_column in rows[0] and (id_column in wanted or wanted is ALL):
            sent = next(t for t in body["inputs"] if t["name"] == id_column)  # every input is a named object now
            outputs.append(
                {"shape": sent["shape"], "datatype": sent["datatype"], "data": sent["data"], "name": id_column}
            )
        if explain:
            outputs.append(explanation_output(scored.explain(explain)))
        answer = {
            "model_name": served_name,
            "model_version": run_id,
            "id": given_id or ours.request_id,
            "parameters": {"model_run_id": run_id},
            "outputs": outputs,
        }
        return Response(json_text.dumps(answer), content_type="application/json")

    return routes
