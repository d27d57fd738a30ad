"""The simulators' sampling and drift: valid records, reproducible draws, and drift a detector cannot miss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare, ks_2samp

from mlops.contract import validate_record
from mlops.data import clean, generate_bank_churners
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec
from simulation_business.sampling import drift_frame, envelope, sample, to_records

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return clean(generate_bank_churners(3000, seed=3), SPEC, require_target=False)


def test_records_are_valid_api_records(frame: pd.DataFrame) -> None:
    records = to_records(frame, SPEC)
    assert len(records) == len(frame)
    for record in records[:300]:
        assert set(record) == set(SPEC.feature_columns)
        validate_record(record, SPEC)  # raises on any invalid field
    assert all(isinstance(r["customer_age"], int) for r in records)
    # "Unknown" education becomes a missing value (None), never the string
    assert any(r["education_level"] is None for r in records)
    assert not any(r["education_level"] == "Unknown" for r in records)


def test_rows_with_missing_numbers_are_left_out(frame: pd.DataFrame) -> None:
    holed = frame.copy()
    holed.loc[[0, 5], "credit_limit"] = np.nan
    assert len(to_records(holed, SPEC)) == len(frame) - 2


def test_missing_feature_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="credit_limit"):
        to_records(frame.drop(columns=["credit_limit"]), SPEC)


def test_sampling_is_reproducible_and_copies(frame: pd.DataFrame) -> None:
    records = to_records(frame.head(50), SPEC)
    first = sample(records, 10, np.random.default_rng(1))
    assert first == sample(records, 10, np.random.default_rng(1))
    assert len(first) == 10
    first[0]["customer_age"] = -1
    assert all(r["customer_age"] != -1 for r in records)
    with pytest.raises(ValueError):
        sample([], 1, np.random.default_rng(1))


def test_drift_shifts_every_numeric_feature_detectably(frame: pd.DataFrame) -> None:
    drifted = drift_frame(frame, SPEC, strength=1.0, seed=0)
    for column in SPEC.numeric:
        before, after = frame[column].astype(float), drifted[column].astype(float)
        assert ks_2samp(before.sample(300, random_state=0), after.sample(300, random_state=1)).pvalue < 0.001, column
        feature = SPEC.numeric[column]
        if feature.min is not None:
            assert after.min() >= feature.min
        if feature.max is not None:
            assert after.max() <= feature.max


def test_drift_mirrors_category_frequencies(frame: pd.DataFrame) -> None:
    drifted = drift_frame(frame, SPEC, strength=1.0, seed=0)
    for column in [*SPEC.categorical, *SPEC.ordinal]:
        before = frame[column].value_counts()
        after = drifted[column].value_counts().reindex(before.index, fill_value=0)
        assert after[before.index[0]] < before.iloc[0], column  # the most common value became rarer
        expected = before.to_numpy() / before.sum() * after.sum()
        assert chisquare(after.to_numpy(), expected).pvalue < 0.001, column
    assert drifted["card_category"].value_counts().index[0] != "Blue"


def test_drifted_records_stay_valid_and_the_input_is_untouched(frame: pd.DataFrame) -> None:
    original = frame.copy()
    drifted = drift_frame(frame, SPEC, strength=2.0, seed=4)
    pd.testing.assert_frame_equal(frame, original)
    for record in to_records(drifted, SPEC)[:300]:
        validate_record(record, SPEC)


def test_envelope_has_a_fresh_request_id() -> None:
    a, b = envelope({"x": 1}), envelope({"x": 1})
    assert a["record"] == {"x": 1} and a["request_id"] != b["request_id"]
    assert envelope({"x": 1}, "mine")["request_id"] == "mine"
