"""GET /openapi.json: generated from the served model's spec, so every field, type, range and category is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from mlops.model_service import ModelService
from mlops.settings import load_settings
from server.api import create_app
from tests.support.records import GOOD, tiny_service, with_


@pytest.fixture(scope="module")
def service() -> ModelService:
    return tiny_service()


@pytest.fixture
def document(service: ModelService, tmp_path: Path) -> dict[str, Any]:
    settings = load_settings("local", state_dir=tmp_path, max_batch_records=7, max_body_bytes=5000)
    response = create_app(settings, service=service, sinks=[]).test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_field_of_the_spec_with_its_type_and_range(document: dict[str, Any], service: ModelService) -> None:
    spec = service.spec
    record = document["components"]["schemas"]["Record"]
    assert record["required"] == spec.required  # an absent feature is a missing value (issue 25)
    assert record["anyOf"] == [{"required": [column]} for column in spec.feature_columns]
    assert record["additionalProperties"] is False
    properties = record["properties"]
    for column, feature in spec.numeric.items():
        assert properties[column]["type"] == ("integer" if feature.type == "int" else "number")
        # an unbounded side carries the range the validator enforces (float32; exact JSON integers for ints)
        bound = 2**53 - 1 if feature.type == "int" else float(np.finfo(np.float32).max)
        assert properties[column]["minimum"] == (feature.min if feature.min is not None else -bound)
        assert properties[column]["maximum"] == (feature.max if feature.max is not None else bound)
    assert properties["customer_age"] == {"type": "integer", "minimum": 18, "maximum": 120}
    assert properties["avg_open_to_buy"] == {
        "type": "number",
        "minimum": -float(np.finfo(np.float32).max),
        "maximum": float(np.finfo(np.float32).max),
    }


def test_categories_are_enums_with_missing_markers(document: dict[str, Any], service: ModelService) -> None:
    properties = document["components"]["schemas"]["Record"]["properties"]
    assert properties["card_category"]["enum"] == ["Blue", "Silver", "Gold", "Platinum", "Unknown", None]
    text, code = properties["income_category"]["anyOf"]
    assert text["enum"][:5] == service.spec.categories("income_category")
    assert code == {"type": "integer", "minimum": 0, "maximum": 4}  # or its position in the order
    assert "ordinal" in properties["education_level"]["description"]


def test_batch_limits_and_error_shapes(document: dict[str, Any]) -> None:
    post = document["paths"]["/predict"]["post"]
    batch = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert (batch["minItems"], batch["maxItems"]) == (1, 7)
    assert "5000 bytes" in post["requestBody"]["description"]
    assert {"200", "400", "413", "422", "503"} <= set(post["responses"])
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "field", "reason"]
    assert document["openapi"].startswith("3.1")


def test_the_record_schema_agrees_with_the_validator(document: dict[str, Any]) -> None:
    """The schema accepts what the API accepts and rejects what it rejects (same spec, two derivations)."""
    schema = document["components"]["schemas"]["Record"]
    jsonschema.validate(GOOD, schema)
    jsonschema.validate(with_(marital_status=None, education_level="Unknown"), schema)
    jsonschema.validate(with_(customer_age=..., education_level=3), schema)  # absent, and an ordinal code
    for bad in ({}, with_(card_category="Titanium"), with_(customer_age=12), with_(x=1), with_(education_level=6)):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
