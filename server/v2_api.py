"""The Open Inference Protocol (KServe V2) beside our own API, so KServe, MLServer and Triton clients call us unchanged.

    GET  /v2/health/live, /v2/health/ready             open, like /health
    GET  /v2                                           server metadata
    GET  /v2/models/<name>[/versions/<v>]              model metadata: one input per feature of the served spec
    GET  /v2/models/<name>[/versions/<v>]/ready
    POST /v2/models/<name>[/versions/<v>]/infer        churn chance of every row

<name> is the served registered model (MODEL_NAME, else the spec's own); <v>, when given, must be the served run id.
A request is MLServer's pandas form ("content_type": "pd"): one input per column, named as the spec names it, shape
[n] (or [n, 1]), BYTES for categories, FP64/INT64 for numbers. Its rows become records and go through the same
scoring step as POST /predict (`score`: validator, model, metrics, prediction log, shadow), so a record answers,
logs and fails alike on both. A bad row is a 422 naming the column (`field`) and the row (`index`); a malformed
request a 400 naming the part (`inputs[2].shape`). Error bodies keep our shape, whose `error` is the V2 one's.
The request's `id`, when sane and no X-Request-ID header came, becomes the request id the prediction is logged
under (so an outcome can name it); the answer's `id` is the request id either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g

from mlops import json_text
from mlops.outcomes import SANE_REQUEST_ID
from server.request_body import read_body

if TYPE_CHECKING:
    from mlops.spec import FeatureSpec
    from server.predict_api import ApiState, Scored

OUTPUT = "churn_chance"
NUMERIC_TYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
)
DATATYPES = NUMERIC_TYPES | {"BYTES"}
PROTOCOL_VERSION = "2"


def input_metadata(spec: FeatureSpec) -> list[dict[str, Any]]:
    """The inputs a request carries, from the spec (so the metadata can never drift from validation)."""
    inputs: list[dict[str, Any]] = []
    for column, feature in spec.numeric.items():
        inputs.append({"name": column, "datatype": "INT64" if feature.type == "int" else "FP64", "shape": [-1]})
    inputs += [{"name": column, "datatype": "BYTES", "shape": [-1]} for column in [*spec.categorical, *spec.ordinal]]
    if spec.id_column:
        inputs.append(
            {"name": spec.id_column, "datatype": "BYTES", "shape": [-1], "parameters": {"optional": True}}
        )  # echoed as an output and logged with the prediction, not a model input
    return inputs


def v2_openapi_paths(spec: FeatureSpec, model_name: str) -> dict[str, Any]:
    """The V2 routes in the API's OpenAPI document (the request's shape; values are judged by the record rule)."""
    error = {"$ref": "#/components/schemas/Error"}
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [entry["name"] for entry in input_metadata(spec)]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
            "datatype": {"type": "string", "enum": sorted(DATATYPES)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
        "required": ["name", "shape", "datatype", "data"],
    }
    request_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        "required": ["inputs"],
    }
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model_name]}}

    def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema or error}}}

    return {
        "/v2/models/{model_name}/infer": {
            "post": {
                "summary": "Open Inference Protocol (V2): churn chance of every row (one input per column)",
                "parameters": [name],
                "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}},
                "responses": {
                    "200": answer("outputs: churn_chance (FP64), the id column when sent", {"type": "object"}),
                    "400": answer("the request is malformed: the part is named (inputs[2].shape)"),
                    "404": answer("no such model or version on this server"),
                    "413": answer("too many rows"),
                    "422": answer("a row is invalid: the column (field) and the row (index) are named"),
                    "503": answer("the model is not loaded yet"),
                },
            }
        },
        "/v2/models/{model_name}": {
            "get": {"summary": "V2 model metadata", "parameters": [name], "responses": {"200": answer("", {})}}
        },
        "/v2/health/ready": {"get": {"summary": "V2 readiness", "responses": {"200": {"description": "ready"}}}},
        "/v2/health/live": {"get": {"summary": "V2 liveness", "responses": {"200": {"description": "live"}}}},
    }


def register_v2(app: Flask, state: ApiState, api_error: type[Exception], score: Callable[[list[Any], bool], Scored]):
    """Add the V2 routes; `score` and `api_error` are the API's own (passed in: under gunicorn the API module is
    __main__, and importing it again would register its metrics twice)."""

    from mlops.registry import model_name_for  # here, not per request: an import statement costs a call each time

    def fail(status: int, error: str, reason: str, field: str | None = None) -> Exception:
        return api_error(status, error, reason, field)

    def served(name: str, version: str | None) -> tuple[Any, str]:
        current = state.service
        if current is None:
            raise fail(503, "model not loaded", state.load_error or "the model is still loading")
        served_name = model_name_for(state.settings, current.spec)
        if name != served_name:
            raise fail(404, "model not found", f"this server serves the model '{served_name}', not '{name}'", "name")
        if version is not None and version != current.run_id:
            raise fail(
                404, "model version not found", f"this server serves version {current.run_id} (the run id)", "version"
            )
        return current, served_name

    @app.get("/v2/health/live")
    def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> tuple[dict[str, Any], int]:
        state.follow_switch()
        return {"ready": state.service is not None}, 200 if state.service is not None else 503

    @app.get("/v2")
    def server_metadata() -> dict[str, Any]:
        return {"name": "churn-mlops", "version": PROTOCOL_VERSION, "extensions": []}

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
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

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        _, served_name = served(name, version)
        return {"name": served_name, "ready": True}

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def infer(name: str, version: str | None = None) -> Response:
        _, served_name = served(name, version)
        body = _parse(read_body(), fail)
        rows = _rows(body, state.settings.max_batch_records, fail)
        wanted = _wanted_outputs(body, fail)
        given_id = body.get("id")
        ours = g._get_current_object()  # the request's own `g`, once (each `g.x` goes through a proxy)
        if given_id is not None and not isinstance(given_id, str):
            raise fail(400, "invalid inference request", "id must be a string", "id")
        if given_id and not ours.request_id_sent and SANE_REQUEST_ID.match(given_id):
            ours.request_id = given_id  # logged under the client's own id
        records, probabilities, run_id, spec = score(rows, True)
        id_column = spec.id_column
        if wanted is not ALL:
            unknown = sorted(wanted - ALL - {id_column})
            if unknown:
                _invalid(fail, f"unknown output(s) {unknown}; this model answers '{OUTPUT}' (and the id)", "outputs")
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
        answer = {
            "model_name": served_name,
            "model_version": run_id,
            "id": given_id or ours.request_id,
            "parameters": {"model_run_id": run_id},
            "outputs": outputs,
        }
        return Response(json_text.dumps(answer), content_type="application/json")


ALL = frozenset({OUTPUT, "*"})


def _parse(raw: bytes, fail: Callable[..., Exception]) -> dict[str, Any]:
    if not raw.strip():
        return _invalid(fail, "the body is empty; send an inference request (an object with inputs)", "(body)")
    try:
        body = json_text.loads(raw)
    except RecursionError:
        return _invalid(fail, "the body is nested too deeply", "(body)", "invalid JSON")
    except ValueError as error:
        return _invalid(fail, f"the body is not valid JSON: {error}", "(body)", "invalid JSON")
    if not isinstance(body, dict):
        return _invalid(fail, f"expected an inference request object, got {type(body).__name__}", "(body)")
    return body


def _invalid(fail: Callable[..., Exception], reason: str, field: str, error: str = "invalid inference request") -> Any:
    raise fail(400, error, reason, field)


def _rows(body: dict[str, Any], max_records: int, fail: Callable[..., Exception]) -> list[dict[str, Any]]:
    """The request's inputs as rows: one dict per row, keyed by input name."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        _invalid(fail, "inputs must be a non-empty list of tensors (one per column)", "inputs")
    found = _fast_rows(inputs)
    if found is not None:
        return found
    seen: set[str] = set()
    values: dict[str, list[Any]] = {}
    n_rows: int | None = None
    for i, tensor in enumerate(inputs):
        name, shape, flat = _fast_column(tensor, seen) or _column(tensor, i, seen, fail)
        if n_rows is None:
            n_rows = shape[0]
        elif shape[0] != n_rows:
            reason = f"every input needs the same number of rows: {n_rows} before, {shape[0]} here"
            _invalid(fail, reason, f"inputs[{i}]")
        seen.add(name)
        values[name] = flat
    assert n_rows is not None
    if n_rows == 0:
        _invalid(fail, "send at least one row", "inputs")
    if n_rows > max_records:
        raise fail(413, "too many records", f"a request may hold at most {max_records} rows, got {n_rows}", "inputs")
    names = list(values)
    return [{name: values[name][row] for name in names} for row in range(n_rows)]


FAST_NUMBERS = {"FP16": (int, float), "FP32": (int, float), "FP64": (int, float), "INT64": (int,), "INT32": (int,)}


def _fast_rows(inputs: list[Any]) -> list[dict[str, Any]] | None:
    """The common well-formed request of one row (every input shape [1], a plain value) in one pass, without the
    per-part checks of `_column`; None for anything else, which the general path then accepts or refuses with the
    part named. (The general path was a tenth of a request's time at saturation.)"""
    row: dict[str, Any] = {}
    for tensor in inputs:
        if type(tensor) is not dict:
            return None
        name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
        if type(name) is not str or not name or name in row:
            return None
        if type(shape) is not list or len(shape) != 1 or shape[0] != 1 or type(data) is not list or len(data) != 1:
            return None
        value = data[0]
        datatype = tensor.get("datatype")
        if datatype == "BYTES":
            if type(value) is list:
                return None
        elif value is not None and type(value) not in FAST_NUMBERS.get(datatype, ()):
            return None
        row[name] = value
    return [row]


def _fast_column(tensor: Any, seen: set[str]) -> tuple[str, list[int], list[Any]] | None:
    """A well-formed input of many rows (shape [n], plain values) without the per-part checks of `_column`."""
    if type(tensor) is not dict:
        return None
    name, datatype, shape, data = tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if not (type(name) is str and name and name not in seen and type(shape) is list and len(shape) == 1):
        return None
    n = shape[0]
    if not (type(n) is int and type(data) is list and len(data) == n):
        return None
    if datatype == "BYTES":
        return (name, shape, data) if all(type(v) is not list for v in data) else None
    allowed = FAST_NUMBERS.get(datatype)
    if allowed is not None and all(v is None or type(v) in allowed for v in data):
        return name, shape, data
    return None


def _column(tensor: Any, i: int, seen: set[str], fail: Callable[..., Exception]) -> tuple[str, list[int], list[Any]]:
    """One input checked part by part (the 400 names the part): its name, shape and values, one per row."""
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        _invalid(fail, "each input must be an object with name, shape, datatype and data", where)
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        _invalid(fail, "name must be a non-empty string (the column)", f"{where}.name")
    if name in seen:
        _invalid(fail, f"the input '{name}' is given twice", f"{where}.name")
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        _invalid(fail, f"datatype must be one of {sorted(DATATYPES)}, got {datatype!r}", f"{where}.datatype")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        _invalid(fail, "shape must be a list of non-negative integers", f"{where}.shape")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        _invalid(
            fail,
            f"one input per column: shape [n] or [n, 1], got {shape} (a pre-encoded matrix is not taken: "
            "every column is validated by name)",
            f"{where}.shape",
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        _invalid(fail, "data must be a list", f"{where}.data")
    flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
    if len(flat) != shape[0] or any(isinstance(v, list) for v in flat):
        _invalid(fail, f"data holds {len(data)} value(s) where the shape {shape} says {shape[0]}", f"{where}.data")
    if datatype in NUMERIC_TYPES:
        for row, value in enumerate(flat):
            if value is not None and not _is_number(value, datatype):
                _invalid(fail, f"row {row}: {value!r} is not a {datatype} value", f"{where}.data")
    return name, shape, flat


def _is_number(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int) or (math.isfinite(value) and value == int(value))
    return True


def _wanted_outputs(body: dict[str, Any], fail: Callable[..., Exception]) -> frozenset[str]:
    requested = body.get("outputs")
    if requested is None:
        return ALL
    named = isinstance(requested, list) and all(_named(o) for o in requested)
    if not named:
        _invalid(fail, "outputs must be a list of objects with a name", "outputs")
    return frozenset(o["name"] for o in requested)


def _named(output: Any) -> bool:
    return isinstance(output, dict) and isinstance(output.get("name"), str)
