import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.data import clean, generate_bank_churners
from mlops.encoding import FeatureEncoder
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
ENCODER = FeatureEncoder(SPEC)


def test_layout_numeric_then_one_hot_then_ranks() -> None:
    names = ENCODER.feature_names
    assert names[: len(SPEC.numeric)] == list(SPEC.numeric)
    assert "gender=M" in names and "card_category=Platinum" in names
    assert names[-2:] == ["education_level", "income_category"]


def test_frame_and_record_encodings_agree() -> None:
    frame = clean(generate_bank_churners(500, seed=2), SPEC)
    records = frame[SPEC.feature_columns].astype(object).where(frame.notna(), None).to_dict("records")
    np.testing.assert_array_equal(ENCODER.encode_frame(frame), ENCODER.encode_records(records))


def test_missing_and_ordinal_values() -> None:
    record = dict.fromkeys(SPEC.feature_columns, 1.0)
    record.update(
        gender="F",
        marital_status=None,
        card_category="gold",
        education_level="Unknown",
        income_category="$120K +",
    )
    row = ENCODER.encode_records([record])[0]
    names = ENCODER.feature_names
    assert row[names.index("gender=F")] == 1 and row[names.index("gender=M")] == 0
    assert math.isnan(row[names.index("marital_status=Married")])
    assert row[names.index("card_category=Gold")] == 1
    assert math.isnan(row[names.index("education_level")])
    assert row[names.index("income_category")] == 4


def test_unresolved_spec_is_refused() -> None:
    from tests.support.telco import SPEC_PATH

    with pytest.raises(ValueError, match="resolve it first"):
        FeatureEncoder(FeatureSpec.load(SPEC_PATH))


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            **{c: st.floats(-1e9, 1e9, allow_nan=False) for c in SPEC.numeric},
            **{c: st.sampled_from([*SPEC.categories(c), None, "Unknown"]) for c in SPEC.categorical},
            **{c: st.sampled_from([*SPEC.categories(c), None]) for c in SPEC.ordinal},
        }
    )
)
def test_any_valid_record_encodes_to_the_declared_width(record: dict) -> None:
    row = ENCODER.encode_records([record])
    assert row.shape == (1, ENCODER.n_features) and row.dtype == np.float32
    for column in SPEC.categorical:
        block = [i for i, n in enumerate(ENCODER.feature_names) if n.startswith(f"{column}=")]
        values = row[0, block]
        assert np.isnan(values).all() or values.sum() == 1
