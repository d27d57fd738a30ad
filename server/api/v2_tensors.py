"""The Open Inference Protocol (V2) request, read into records: MLServer's pandas form, one input per column.

Shape [n] (or [n, 1]), BYTES for categories, FP64/INT64 (any numeric datatype) for numbers. A malformed request is a
400 naming the part (`inputs[2].shape`); the values themselves are judged later by the record contract, like those
of POST /predict.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlops import json_text
from server.api.body import parse_json
from server.api.errors import ApiError

if TYPE_CHECKING:
    from mlops.spec import FeatureSpec

OUTPUT = "churn_chance"
EXPLANATION = "explanation"  # BYTES, one JSON text per row: the reasons (request parameter `explain`)
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


ALL = frozenset({OUTPUT, "*"})


def parse_request(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return invalid("the body is empty; send an inference request (an object with inputs)", "(body)")
    body = parse_json(raw)
    if not isinstance(body, dict):
        return invalid(f"expected an inference request object, got {type(body).__name__}", "(body)")
    return body


def invalid(reason: str, field: str, error: str = "invalid inference request") -> Any:
    raise ApiError(400, error, reason, field)


def request_rows(body: dict[str, Any], max_records: int) -> list[dict[str, Any]]:
    """The request's inputs as rows: one dict per row, keyed by input name."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        invalid("inputs must be a non-empty list of tensors (one per column)", "inputs")
    found = _fast_rows(inputs)
    if found is not None:
        return found
    seen: set[str] = set()
    values: dict[str, list[Any]] = {}
    n_rows: int | None = None
    for i, tensor in enumerate(inputs):
        name, shape, flat = _fast_column(tensor, seen) or _column(tensor, i, seen)
        if n_rows is None:
            n_rows = shape[0]
        elif shape[0] != n_rows:
            reason = f"every input needs the same number of rows: {n_rows} before, {shape[0]} here"
            invalid(reason, f"inputs[{i}]")
        seen.add(name)
        values[name] = flat
    assert n_rows is not None
    if n_rows == 0:
        invalid("send at least one row", "inputs")
    if n_rows > max_records:
        raise ApiError(
            413, "too many records", f"a request may hold at most {max_records} rows, got {n_rows}", "inputs"
        )
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
        if type(datatype) is not str:
            return None
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
    if not (type(n) is int and type(data) is list and len(data) == n and type(datatype) is str):
        return None
    if datatype == "BYTES":
        return (name, shape, data) if all(type(v) is not list for v in data) else None
    allowed = FAST_NUMBERS.get(datatype)
    if allowed is not None and all(v is None or type(v) in allowed for v in data):
        return name, shape, data
    return None


def _column(tensor: Any, i: int, seen: set[str]) -> tuple[str, list[int], list[Any]]:
    """One input checked part by part (the 400 names the part): its name, shape and values, one per row."""
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        invalid("each input must be an object with name, shape, datatype and data", where)
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        invalid("name must be a non-empty string (the column)", f"{where}.name")
    if name in seen:
        invalid(f"the input '{name}' is given twice", f"{where}.name")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        invalid(f"datatype must be one of {sorted(DATATYPES)}, got {datatype!r}", f"{where}.datatype")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        invalid("shape must be a list of non-negative integers", f"{where}.shape")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        invalid(
            f"one input per column: shape [n] or [n, 1], got {shape} (a pre-encoded matrix is not taken: "
            "every column is validated by name)",
            f"{where}.shape",
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        invalid("data must be a list", f"{where}.data")
    flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
    if len(flat) != shape[0] or any(isinstance(v, list) for v in flat):
        invalid(f"data holds {len(data)} value(s) where the shape {shape} says {shape[0]}", f"{where}.data")
    if datatype in NUMERIC_TYPES:
        for row, value in enumerate(flat):
            if value is not None and not _is_number(value, datatype):
                invalid(f"row {row}: {value!r} is not a {datatype} value", f"{where}.data")
    return name, shape, flat


def _is_number(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int) or (math.isfinite(value) and value == int(value))
    return True


def wanted_outputs(body: dict[str, Any]) -> frozenset[str]:
    requested = body.get("outputs")
    if requested is None:
        return ALL
    named = isinstance(requested, list) and all(_named(o) for o in requested)
    if not named:
        invalid("outputs must be a list of objects with a name", "outputs")
    return frozenset(o["name"] for o in requested)


def explain_parameter(body: dict[str, Any], wanted: frozenset[str]) -> Any:
    """The request's `parameters.explain` (what mlops.explain.explain_count reads); naming the output
    `explanation` without it asks for every feature's contribution."""
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        invalid("parameters must be an object", "parameters")
    value = (parameters or {}).get("explain")
    if value is None and EXPLANATION in wanted:
        return "all"
    return value


def explanation_output(explanations: list[Any]) -> dict[str, Any]:
    data = [json_text.dumps(e).decode() for e in explanations]
    return {
        "name": EXPLANATION,
        "shape": [len(data)],
        "datatype": "BYTES",
        "parameters": {"content_type": "str", "units": "log-odds"},
        "data": data,
    }


def _named(output: Any) -> bool:
    return isinstance(output, dict) and isinstance(output.get("name"), str)
