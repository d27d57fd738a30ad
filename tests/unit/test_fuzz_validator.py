"""Property tests (hypothesis) of the record validator and the encoders, no servers.

- Any record inside the spec's ranges and categories validates, and both encoders (row-wise and columnar) give the
  same matrix and a finite probability in [0, 1].
- Any JSON value in any field is either accepted or refused with a RecordError naming that field: never another
  exception (which the API would turn into a 500).
- Any JSON body through the Flask app gets a status below 500.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.contract import RecordError
from mlops.model_service import ModelService
from mlops.settings import load_settings
from server.api import create_app
from tests.support.records import GOOD, tiny_service

SERVICE: ModelService = tiny_service()
SPEC = SERVICE.spec
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)


def _numeric(column: str) -> st.SearchStrategy[Any]:
    feature = SPEC.numeric[column]
    low = feature.min if feature.min is not None else -1e6
    high = feature.max if feature.max is not None else 1e6
    if feature.type == "int":
        return st.integers(int(np.ceil(low)), int(np.floor(high)))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _category(column: str) -> st.SearchStrategy[Any]:
    known = list(SPEC.categories(column))
    spelled = st.sampled_from(known).flatmap(lambda v: st.sampled_from([v, v.lower(), v.upper()]))
    return spelled | st.sampled_from([*SPEC.missing_values, None])


VALID_RECORDS = st.fixed_dictionaries(
    {
        **{c: _numeric(c) for c in SPEC.numeric},
        **{c: _category(c) for c in [*SPEC.categorical, *SPEC.ordinal]},
    }
)


@settings(max_examples=100, deadline=None)
@given(records=st.lists(VALID_RECORDS, min_size=1, max_size=40))
def test_valid_records_validate_and_both_encoders_agree(records: list[dict[str, Any]]) -> None:
    valid = SERVICE.validate(records)
    encoder = SERVICE.bundle.encoder
    rows, columns = encoder.encode_records(valid), encoder.encode_columnar(valid)
    np.testing.assert_array_equal(rows, columns)
    probabilities = SERVICE.predict_records(valid)
    assert len(probabilities) == len(records)
    assert np.all(np.isfinite(probabilities)) and np.all((probabilities >= 0) & (probabilities <= 1))


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(SPEC.feature_columns), value=JSON_VALUES)
def test_any_value_in_any_field_is_accepted_or_refused_by_name(field: str, value: Any) -> None:
    record = {**GOOD, field: value}
    try:
        SERVICE.validate([record])
    except RecordError as error:
        assert error.field == field
        assert error.reason
        return
    SERVICE.predict_records(SERVICE.validate([record]))  # accepted values must also encode and predict


APP = create_app(load_settings("local", drift_service_url=None, max_batch_records=50), service=SERVICE, sinks=[])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON_VALUES | st.lists(st.fixed_dictionaries({}, optional={k: JSON_VALUES for k in GOOD}), max_size=5))
def test_any_json_body_gets_an_answer_below_500(body: Any) -> None:
    response = APP.test_client().post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500, (body, response.get_data(as_text=True)[:200])
    if response.status_code >= 400:
        assert response.get_json()["reason"]


@pytest.mark.parametrize("raw", [b"\x00", b"{" * 5000, b'"\\ud800"', b"1e999", b"[1e999]"])
def test_odd_bytes_get_an_answer_below_500(raw: bytes) -> None:
    response = APP.test_client().post("/predict", data=raw, content_type="application/json")
    assert 400 <= response.status_code < 500
