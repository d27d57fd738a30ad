from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import (
    KAGGLE_COLUMNS,
    LABEL,
    DataError,
    clean,
    content_hash,
    generate_bank_churners,
    read_raw,
    write_generated,
)
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate_bank_churners(3000, seed=5)


def test_generator_writes_the_exact_kaggle_schema(tmp_path: Path) -> None:
    path = write_generated(tmp_path / "BankChurners.csv", 500, seed=1)
    header = path.read_text().splitlines()[0]
    assert header == ",".join(f'"{c}"' for c in KAGGLE_COLUMNS)
    frame = read_raw(path)
    assert list(frame.columns) == KAGGLE_COLUMNS
    assert set(frame["Attrition_Flag"]) == {"Attrited Customer", "Existing Customer"}
    assert "Unknown" in set(frame["Education_Level"])
    assert "Unknown" in set(frame["Income_Category"])
    assert frame["CLIENTNUM"].is_unique


def test_generator_is_seeded_and_has_realistic_attrition(raw: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(raw, generate_bank_churners(3000, seed=5))
    rate = (raw["Attrition_Flag"] == "Attrited Customer").mean()
    assert 0.13 < rate < 0.19
    churners = raw[raw["Attrition_Flag"] == "Attrited Customer"]
    stayers = raw[raw["Attrition_Flag"] == "Existing Customer"]
    assert churners["Total_Trans_Ct"].mean() < stayers["Total_Trans_Ct"].mean() - 10  # a real signal


def test_clean_types_every_feature_and_maps_missing_and_target(raw: pd.DataFrame) -> None:
    frame = clean(raw, SPEC)
    assert list(frame.columns) == ["clientnum", *SPEC.feature_columns, LABEL]
    assert frame[LABEL].isin([0, 1]).all()
    assert frame["education_level"].isna().any()  # "Unknown" -> missing
    assert not (frame["education_level"] == "Unknown").any()
    assert frame["customer_age"].dtype == np.float64
    assert not any(c.startswith("naive_bayes") for c in frame.columns)


def test_clean_matches_columns_and_categories_case_insensitively(raw: pd.DataFrame) -> None:
    shouted = raw.rename(columns=str.upper)
    shouted["GENDER"] = shouted["GENDER"].str.lower()
    frame = clean(shouted, SPEC)
    assert set(frame["gender"].dropna()) == {"M", "F"}


def test_missing_column_is_named(raw: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['customer_age'\]"):
        clean(raw.drop(columns=["Customer_Age"]), SPEC)


def test_non_numeric_age_names_column_row_and_value(tmp_path: Path, raw: pd.DataFrame) -> None:
    broken = raw.head(10).copy().astype(object)
    broken.loc[3, "Customer_Age"] = "forty"
    path = tmp_path / "bad.csv"
    broken.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'customer_age', row 5: must be a number, got string \"forty\""):
        clean(read_raw(path), SPEC)


def test_fractional_value_in_integer_column_is_refused(raw: pd.DataFrame) -> None:
    broken = raw.head(10).copy()
    broken["Dependent_count"] = broken["Dependent_count"].astype(float)
    broken.loc[2, "Dependent_count"] = 1.5
    with pytest.raises(DataError, match=r"column 'dependent_count', row 4: must be a whole number, got 1.5"):
        clean(broken, SPEC)


def test_unknown_target_label_is_named(raw: pd.DataFrame) -> None:
    broken = raw.head(20).copy()
    broken.loc[0, "Attrition_Flag"] = "Churned?"
    with pytest.raises(DataError, match=r"'attrition_flag' has unknown target label\(s\) \['Churned\?'\]"):
        clean(broken, SPEC)


def test_unknown_category_is_named(raw: pd.DataFrame) -> None:
    broken = raw.head(20).copy()
    broken.loc[0, "Card_Category"] = "Titanium"
    with pytest.raises(DataError, match=r"column 'card_category', row 2: unknown category 'Titanium'"):
        clean(broken, SPEC)


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_raw(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(KAGGLE_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no rows"):
        read_raw(header_only)
    with pytest.raises(DataError, match="does not exist"):
        read_raw(tmp_path / "missing.csv")


def test_content_hash_changes_with_content_only(raw: pd.DataFrame) -> None:
    a = clean(raw, SPEC)
    assert content_hash(a) == content_hash(clean(raw.copy(), SPEC))
    b = a.copy()
    b.loc[0, "credit_limit"] += 1
    assert content_hash(a) != content_hash(b)


def test_rows_of_the_real_kaggle_file_load_unchanged() -> None:
    """The first rows (and some attrited ones) of the public Kaggle BankChurners.csv, verbatim: unquoted values,
    '$120K +', 'Post-Graduate', scientific notation in the two leak columns, which are dropped."""
    path = PROJECT_ROOT / "tests" / "data" / "bank_churners_kaggle_head.csv"
    frame = read_raw(path)
    assert list(frame.columns) == KAGGLE_COLUMNS
    cleaned = clean(frame, SPEC)
    assert len(cleaned) == 30 and cleaned[LABEL].sum() == 7
    assert list(cleaned.columns) == ["clientnum", *SPEC.feature_columns, LABEL]
    assert not cleaned[list(SPEC.numeric)].isna().any().any()
    assert cleaned["income_category"].isna().sum() == 2  # 'Unknown' income is missing, not a category
    assert set(cleaned["card_category"]) == {"Blue", "Gold", "Silver"}


def _with_repeated_ids(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.head(50).copy()
    frame.loc[10:14, "CLIENTNUM"] = frame.loc[0, "CLIENTNUM"]  # 6 rows of one id
    frame.loc[20, "CLIENTNUM"] = frame.loc[21, "CLIENTNUM"]  # 2 rows of another
    return frame


def test_repeated_ids_stop_training_data_with_the_count_and_examples(raw: pd.DataFrame) -> None:
    from mlops.data import resolve_duplicate_ids

    frame = clean(_with_repeated_ids(raw), SPEC)
    with pytest.raises(DataError, match=r"repeats 2 id\(s\) over 8 rows") as caught:
        resolve_duplicate_ids(frame, SPEC)
    assert str(raw.loc[0, "CLIENTNUM"]) in str(caught.value) and "duplicate_ids" in str(caught.value)


@pytest.mark.parametrize(("policy", "rows"), [("keep_last", 44), ("drop", 42)])
def test_the_spec_can_resolve_repeated_ids(raw: pd.DataFrame, policy: str, rows: int) -> None:
    from mlops.data import resolve_duplicate_ids

    spec = SPEC.model_copy(update={"duplicate_ids": policy})
    frame, removed = resolve_duplicate_ids(clean(_with_repeated_ids(raw), spec), spec)
    assert (len(frame), removed) == (rows, 50 - rows)
    assert not frame["clientnum"].duplicated().any()


def test_the_split_never_puts_one_id_on_both_sides(raw: pd.DataFrame) -> None:
    from mlops import training

    spec = SPEC.model_copy(update={"duplicate_ids": "keep_last"})
    frame = clean(generate_bank_churners(600, seed=3), spec)
    frame.loc[300:399, "clientnum"] = frame.loc[0:99, "clientnum"].to_numpy()  # 100 ids twice
    data = training.split_data(frame, spec, seed=1)
    assert sum(data.sizes.values()) == 500
    with pytest.raises(DataError, match="repeats 100 id"):
        training.split_data(frame, SPEC, seed=1)


def test_quality_summary_counts_rows_balance_missing_and_repeats(raw: pd.DataFrame) -> None:
    from mlops.data import quality_summary

    frame = clean(raw.head(100), SPEC)
    frame.loc[0:9, "credit_limit"] = np.nan
    frame.loc[50, "clientnum"] = frame.loc[51, "clientnum"]
    summary = quality_summary(frame, SPEC)
    assert summary["rows"] == 100 and summary["repeated_ids"] == 1
    assert summary["missing_share"]["credit_limit"] == 0.1
    assert summary["positive_rows"] == int(frame["label"].sum())
