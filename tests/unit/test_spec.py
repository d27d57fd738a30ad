from pathlib import Path

import pytest

from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec, SpecError, normalize_name
from tests.support.telco import SPEC_PATH


def test_default_spec_is_the_kaggle_schema_with_all_usable_features() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    assert spec.id_column == "clientnum"
    assert spec.target.column == "attrition_flag"
    assert spec.target.positive == "Attrited Customer"
    assert len(spec.feature_columns) == 19  # 23 columns - id - target - 2 leaks
    assert all(c.startswith("naive_bayes_classifier") for c in spec.drop)
    assert spec.ordinal["income_category"][0] == "Less than $40K"
    assert spec.missing_values == ["Unknown"]
    assert spec.is_resolved


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Customer_Age", "customer_age"), (" Tenure Months ", "tenure_months"), ("A-B", "a_b")],
)
def test_normalize_name(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


def test_second_spec_learns_open_categories() -> None:
    spec = FeatureSpec.load(SPEC_PATH)
    assert not spec.is_resolved
    resolved = spec.resolve({"contract": ["two-year", "monthly", "monthly"]})
    assert resolved.categorical["contract"] == ["monthly", "two-year"]
    assert resolved.is_resolved


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ntarget: {column: y, positive: a}\n", "declares no feature"),
        ("name: x\ntarget: {column: y, positive: a}\nnumeric: {a: {}}\ncategorical: {a: [p]}\n", "in both"),
        ("name: x\ntarget: {column: a, positive: a}\nnumeric: {a: {}}\n", "target or id"),
        ("name: x\nnumeric: {a: {}}\n", "target"),
        ("name: x\ntarget: {column: y, positive: a}\nordinal: {o: [lo, LO]}\n", "twice"),
        ("name: x\ntarget: {column: y, positive: a}\nnumeric: {a: {type: text}}\n", "numeric.a.type"),
        ("name: [oops\n", "not valid YAML"),
    ],
)
def test_bad_spec_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        FeatureSpec.load(path)


def test_missing_spec_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="FEATURE_SPEC"):
        FeatureSpec.load(tmp_path / "nope.yaml")


def test_json_round_trip_keeps_everything() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    assert FeatureSpec.from_json(spec.to_json()) == spec
