"""The API's OpenAPI 3.1 document, built from the served model's spec, so it can never drift from validation.

Records, outcomes and V2 tensors are described by the same spec the record contract enforces (types, ranges,
categories, the id column); schemathesis fuzzes the API from this document (tests/integration/test_fuzz_api.py).
"""

from __future__ import annotations

from typing import Any

from mlops.contract import FLOAT32_MAX
from mlops.contract.rules import MAX_ID_CHARS
from mlops.outcomes import REQUEST_ID_PATTERN
from mlops.spec import FeatureSpec
from server.api.v2_tensors import DATATYPES, input_metadata

MAX_SAFE_INTEGER = 2**53 - 1


REPORT_COUNTS = ("received", "settled", "duplicates", "unknown", "ambiguous", "conflicts", "refused", "archived")


def record_schema(spec: FeatureSpec) -> dict[str, Any]:
    """JSON Schema of one record, from the spec: every field, its type, its range or its categories."""
    properties: dict[str, Any] = {}
    for column, feature in spec.numeric.items():
        schema: dict[str, Any] = {"type": "integer" if feature.type == "int" else "number"}
        # unbounded sides get the 32-bit float range the validator enforces (found by schemathesis: the
        # document promised more than the API takes)
        bound = MAX_SAFE_INTEGER if feature.type == "int" else FLOAT32_MAX  # ints: JSON's exact range
        schema["minimum"] = feature.min if feature.min is not None else -bound
        schema["maximum"] = feature.max if feature.max is not None else bound
        properties[column] = schema
    for column in [*spec.categorical, *spec.ordinal]:
        kind = "ordinal (ordered)" if column in spec.ordinal else "categorical"
        properties[column] = {
            "type": ["string", "null"],
            "enum": [*spec.categories(column), *spec.missing_values, None],
            "description": f"{kind}; matched case-insensitively; null, absent or {spec.missing_values} mean missing",
        }
        if column in spec.ordinal:  # or the integer code of its position in the order (mlops.spec.ordinal_code)
            start, order = spec.ordinal_codes_start, spec.ordinal[column]
            text = properties.pop(column)
            properties[column] = {
                "anyOf": [
                    {"type": ["string", "null"], "enum": text["enum"]},
                    {"type": "integer", "minimum": start, "maximum": start + len(order) - 1},
                ],
                "description": f"{text['description']}; or its code {start}..{start + len(order) - 1} in {order}",
            }
    if spec.id_column:
        properties[spec.id_column] = {
            "type": ["integer", "string"],
            "maxLength": MAX_ID_CHARS,
            "description": f"optional client id; not a model input; at most {MAX_ID_CHARS} characters as text",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": list(spec.required),  # an absent feature is a missing value; at least one must be given
        "anyOf": [{"required": [column]} for column in spec.feature_columns],
        "additionalProperties": False,
    }


def outcome_schema(spec: FeatureSpec) -> dict[str, Any]:
    """JSON Schema of one outcome (mlops.outcomes), in the canonical spelling of its fields."""
    labels = [spec.target.positive] + ([spec.target.negative] if spec.target.negative else [])
    properties: dict[str, Any] = {
        "request_id": {"type": ["string", "integer"], "pattern": REQUEST_ID_PATTERN},
        "label": {"type": "string", "enum": labels, "description": "matched case-insensitively"},
        "observed_at": {"type": "string", "description": "ISO 8601 date or time (UTC without offset); default now"},
    }
    ways = [{"required": ["request_id"]}]
    if spec.id_column:
        properties[spec.id_column] = {
            "type": ["string", "integer"],
            "maxLength": MAX_ID_CHARS,
            "description": f"the customer's id; at most {MAX_ID_CHARS} characters as text",
        }
        ways.append({"required": [spec.id_column]})
    return {
        "type": "object",
        "properties": properties,
        "required": ["label"],
        "anyOf": ways,
        "additionalProperties": False,
    }


def openapi_document(spec: FeatureSpec, max_records: int, max_body_bytes: int) -> dict[str, Any]:
    """OpenAPI 3.1 description of this API for the served model's spec (so it can never drift from validation)."""
    error = {"$ref": "#/components/schemas/Error"}
    prediction = {"$ref": "#/components/schemas/Prediction"}

    def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    customer_parameter = {
        "name": "customer_id",
        "in": "path",
        "required": True,
        "description": f"the customer's {spec.id_column or 'id'}",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
    }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Churn prediction API ({spec.name})",
            "version": "1",
            "description": "Churn chance of credit-card customers. Every response carries X-Request-ID.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Churn chance of one record, or of a list of records (answered in order)",
                    "parameters": [EXPLAIN_PARAMETER],
                    "requestBody": {
                        "required": True,
                        "description": f"at most {max_body_bytes} bytes",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Record"},
                                            "minItems": 1,
                                            "maxItems": max_records,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": answer("churn chance", {"oneOf": [prediction, {"type": "array", "items": prediction}]}),
                        "400": answer("the body is not JSON, not an object or list, or an empty list", error),
                        "413": answer("the body or the list is too large", error),
                        "422": answer("a record is invalid: the field and the reason are named", error),
                        "503": answer("the model is not loaded yet", error),
                    },
                }
            },
            "/outcomes": {
                "post": {
                    "summary": "Observed outcomes of earlier predictions (one or a list), joined to the predictions",
                    "description": "By request_id (X-Request-ID of /predict, request_id of a Kinesis envelope), "
                    "by the customer id, or both; names in any spelling, the label also under the target's name "
                    f"({spec.target.column}). The same outcome twice counts once.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Outcome"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Outcome"},
                                            "minItems": 1,
                                            "maxItems": max_records,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": answer("what became of each outcome", {"$ref": "#/components/schemas/OutcomeReport"}),
                        "400": answer("the body is not JSON, not an object or list, or an empty list", error),
                        "413": answer("the body or the list is too large", error),
                        "422": answer("an outcome is invalid: the field and the reason are named", error),
                        "503": answer("the outcome store is unavailable (PREDICTION_LOG_URI)", error),
                    },
                }
            },
            "/customers/{customer_id}/churn": {
                "get": {
                    "summary": "Churn chance of one customer from the online store's latest features",
                    "parameters": [customer_parameter],
                    "responses": {
                        "200": answer(
                            "churn chance, and the snapshot (data hash) the features came from",
                            {"$ref": "#/components/schemas/CustomerPrediction"},
                        ),
                        "400": answer("the id is empty or too long", error),
                        "404": answer("no such customer in the online store", error),
                        "409": answer("the stored features no longer fit the served model's spec", error),
                        "503": answer("the model is not loaded, or the online store is down (ONLINE_STORE_URI)", error),
                    },
                }
            },
            "/customers/{customer_id}/features": {
                "get": {
                    "summary": "The online store's latest features of one customer",
                    "parameters": [customer_parameter],
                    "responses": {
                        "200": {"description": "features, snapshot, materialized_at"},
                        "400": answer("the id is empty or too long", error),
                        "404": answer("no such customer in the online store", error),
                        "503": answer("the model is not loaded, or the online store is down (ONLINE_STORE_URI)", error),
                    },
                }
            },
            "/predictions/{request_id}": {
                "get": {
                    "summary": "Decision replay: the logged input, the run that answered, its reasons recomputed",
                    "parameters": [
                        {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        EXPLAIN_PARAMETER,
                        {"name": "model", "in": "query", "schema": {"enum": ["champion"]}},
                    ],
                    "responses": {
                        "200": answer("every prediction logged under the request id", {"type": "object"}),
                        "404": answer("nothing is logged under this request id", error),
                        "503": answer("the prediction store or MLflow is unreachable", error),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "200 once a model is loaded (its run id and where it came from); 503 before",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "model not loaded"}},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "JSON"}}}},
        },
        "components": {
            "schemas": {
                "Record": record_schema(spec),
                "Prediction": {
                    "type": "object",
                    "properties": {
                        "churn chance": {"type": "number", "minimum": 0, "maximum": 1},
                        "model_run_id": {"type": "string"},
                        "missing": {"type": "array", "items": {"type": "string"}},
                        "explanation": {"type": "object", "description": "with ?explain=k: bias, contributions"},
                    },
                    "required": ["churn chance", "model_run_id"],
                },
                "CustomerPrediction": {
                    "type": "object",
                    "properties": {
                        "churn chance": {"type": "number", "minimum": 0, "maximum": 1},
                        "model_run_id": {"type": "string"},
                        "snapshot": {"type": "string", "description": "data hash of the features' snapshot"},
                    },
                    "required": ["churn chance", "model_run_id", "snapshot"],
                },
                "Outcome": outcome_schema(spec),
                "OutcomeReport": {
                    "type": "object",
                    "properties": {key: {"type": "integer", "minimum": 0} for key in REPORT_COUNTS}
                    | {
                        "unknown_keys": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                        "ambiguous_keys": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                        "archived_before": {
                            "type": ["string", "null"],
                            "description": "predictions logged before this time were archived (outcomes observed "
                            "before it count as archived)",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                        "index": {"type": "integer", "description": "position of the bad record in a batch"},
                    },
                    "required": ["error", "field", "reason"],
                },
            }
        },
    }


EXPLAIN_PARAMETER = {
    "name": "explain",
    "in": "query",
    "description": "the k largest feature contributions (log-odds, exact TreeSHAP) with each answer; 'all' for every",
    "schema": {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "all"}]},
}


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
