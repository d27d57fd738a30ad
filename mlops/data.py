"""Raw data in, clean typed frame out; plus a generator of realistic raw data in the Kaggle BankChurners schema.

Everything here is pure (DataFrame -> DataFrame); reading a file is the only IO. Cleaning (what a valid row is)
lives in `mlops.contract`, shared with every serving entry point; it is re-exported here for the data pipeline.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.contract import LABEL, DataError, clean
from mlops.spec import FeatureSpec

__all__ = [
    "LABEL",
    "DataError",
    "clean",
    "content_hash",
    "generate_bank_churners",
    "quality_summary",
    "read_raw",
    "reference_sample",
    "resolve_duplicate_ids",
]


# ----------------------------------------------------------------------------------------------------------- reading
def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a raw CSV or Parquet file as strings-or-numbers, refusing empty input with a clear message."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except pd.errors.EmptyDataError as error:
        raise DataError(f"data file {path} is empty") from error
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        raise DataError(f"data file {path} cannot be read as CSV/Parquet: {error}") from error
    if frame.empty:
        raise DataError(f"data file {path} has a header but no rows")
    return frame


def resolve_duplicate_ids(frame: pd.DataFrame, spec: FeatureSpec) -> tuple[pd.DataFrame, int]:
    """Apply the spec's `duplicate_ids` policy to a clean frame; returns the frame and the rows removed.

    Repeated ids would let one customer sit on both sides of the train/test split and inflate the test metrics, so
    the default stops with the count and examples; `keep_last` keeps each id's last row, `drop` drops every row of
    a repeated id. Rows without an id are kept as they are.
    """
    column = spec.id_column
    if not column or column not in frame.columns:
        return frame, 0
    ids = frame[column]
    repeated = ids.notna() & ids.duplicated(keep=False)
    if not repeated.any():
        return frame, 0
    distinct = int(ids[repeated].nunique())
    if spec.duplicate_ids == "error":
        examples = ids[repeated].drop_duplicates().head(5).tolist()
        raise DataError(
            f"column '{column}' repeats {distinct} id(s) over {int(repeated.sum())} rows (e.g. {examples}): the same "
            "customer could land in both training and test data; fix the file, or set `duplicate_ids: keep_last` "
            "or `duplicate_ids: drop` in the spec",
            field=column,
            reason="duplicated ids",
        )
    if spec.duplicate_ids == "keep_last":
        keep = ~(ids.notna() & ids.duplicated(keep="last"))
    else:
        keep = ~repeated
    kept = frame[keep].reset_index(drop=True)
    return kept, len(frame) - len(kept)


def quality_summary(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, object]:
    """What a reviewer of a training run wants to know about its data: size, class balance, missing values per
    feature, repeated ids and fully duplicated rows (logged to the run as data_quality.json)."""
    features = [c for c in spec.feature_columns if c in frame.columns]
    summary: dict[str, object] = {
        "rows": len(frame),
        "missing_share": {c: round(float(frame[c].isna().mean()), 4) for c in features},
        "duplicated_rows": int(frame[features].duplicated().sum()),
    }
    if LABEL in frame.columns:
        summary["positive_rows"] = int(frame[LABEL].sum())
        summary["positive_share"] = round(float(frame[LABEL].mean()), 4)
    if spec.id_column and spec.id_column in frame.columns:
        summary["repeated_ids"] = int(frame[spec.id_column].dropna().duplicated().sum())
    return summary


def content_hash(clean_frame: pd.DataFrame) -> str:
    """A short, stable hash of the clean data's content (row order included): the feature store key."""
    hashed = pd.util.hash_pandas_object(clean_frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, clean_frame.columns)).encode())
    return digest.hexdigest()[:16]


def reference_sample(clean_frame: pd.DataFrame, size: int = 5000, seed: int = 42) -> pd.DataFrame:
    """The sample drift is measured against: a fixed random subset of the training data."""
    if len(clean_frame) <= size:
        return clean_frame.reset_index(drop=True)
    return clean_frame.sample(n=size, random_state=seed).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------- generator
KAGGLE_COLUMNS = [
    "CLIENTNUM",
    "Attrition_Flag",
    "Customer_Age",
    "Gender",
    "Dependent_count",
    "Education_Level",
    "Marital_Status",
    "Income_Category",
    "Card_Category",
    "Months_on_book",
    "Total_Relationship_Count",
    "Months_Inactive_12_mon",
    "Contacts_Count_12_mon",
    "Credit_Limit",
    "Total_Revolving_Bal",
    "Avg_Open_To_Buy",
    "Total_Amt_Chng_Q4_Q1",
    "Total_Trans_Amt",
    "Total_Trans_Ct",
    "Total_Ct_Chng_Q4_Q1",
    "Avg_Utilization_Ratio",
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_Education_Level_"
    "Months_Inactive_12_mon_1",
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_Education_Level_"
    "Months_Inactive_12_mon_2",
]


def generate_bank_churners(n_rows: int = 10_127, seed: int = 42, churn_rate: float = 0.16) -> pd.DataFrame:
    """Synthetic customers in the exact raw schema and spelling of Kaggle's BankChurners.csv.

    The label is drawn first and the behavioural features are drawn conditionally on it, with overlapping
    distributions shaped after the public data (churners trade less, hold lower revolving balances, are inactive
    and contacted more, hold fewer products), so the signal is real but not trivial. Demographics carry little signal,
    as in the real data. "Unknown" appears in education, marital status and income at about the real rates.
    """
    if n_rows < 1:
        raise ValueError("n_rows must be positive")
    rng = np.random.default_rng(seed)
    churn = rng.random(n_rows) < churn_rate

    def pick(values: list[str], weights: list[float], size: int = n_rows) -> np.ndarray:
        p = np.asarray(weights, dtype=float)
        return rng.choice(values, size=size, p=p / p.sum())

    age = np.clip(np.round(rng.normal(46, 8, n_rows)), 26, 73).astype(int)
    gender = pick(["F", "M"], [0.53, 0.47])
    dependents = rng.choice([0, 1, 2, 3, 4, 5], size=n_rows, p=[0.09, 0.18, 0.26, 0.27, 0.15, 0.05])
    education = pick(
        ["Graduate", "High School", "Unknown", "Uneducated", "College", "Post-Graduate", "Doctorate"],
        [0.31, 0.20, 0.15, 0.15, 0.10, 0.05, 0.04],
    )
    marital = pick(["Married", "Single", "Unknown", "Divorced"], [0.46, 0.39, 0.07, 0.07])
    income_levels = ["Less than $40K", "$40K - $60K", "$60K - $80K", "$80K - $120K", "$120K +", "Unknown"]
    income = np.where(
        gender == "F",
        pick(income_levels, [0.58, 0.20, 0.0, 0.0, 0.0, 0.22]),
        pick(income_levels, [0.12, 0.16, 0.29, 0.32, 0.15, 0.06]),
    )
    card = pick(["Blue", "Silver", "Gold", "Platinum"], [0.93, 0.055, 0.012, 0.003])
    months_on_book = np.clip(np.round(age - 10 + rng.normal(0, 6, n_rows)), 13, 56).astype(int)

    relationship = np.where(
        churn,
        rng.choice([1, 2, 3, 4, 5, 6], n_rows, p=[0.14, 0.22, 0.22, 0.16, 0.13, 0.13]),
        rng.choice([1, 2, 3, 4, 5, 6], n_rows, p=[0.07, 0.10, 0.23, 0.19, 0.20, 0.21]),
    )
    inactive = np.where(
        churn,
        rng.choice([0, 1, 2, 3, 4, 5, 6], n_rows, p=[0.01, 0.06, 0.30, 0.51, 0.08, 0.02, 0.02]),
        rng.choice([0, 1, 2, 3, 4, 5, 6], n_rows, p=[0.003, 0.25, 0.33, 0.36, 0.04, 0.01, 0.007]),
    )
    contacts = np.where(
        churn,
        rng.choice([0, 1, 2, 3, 4, 5, 6], n_rows, p=[0.005, 0.06, 0.25, 0.42, 0.19, 0.045, 0.03]),
        rng.choice([0, 1, 2, 3, 4, 5, 6], n_rows, p=[0.046, 0.16, 0.33, 0.32, 0.12, 0.02, 0.004]),
    )
    income_base = {
        "Less than $40K": 3500,
        "$40K - $60K": 5500,
        "$60K - $80K": 10000,
        "$80K - $120K": 15000,
        "$120K +": 19000,
        "Unknown": 8000,
    }
    card_factor = {"Blue": 1.0, "Silver": 2.2, "Gold": 2.8, "Platinum": 3.0}
    base = np.array([income_base[i] for i in income]) * np.array([card_factor[c] for c in card])
    credit_limit = np.clip(np.round(base * rng.lognormal(0, 0.55, n_rows), 1), 1438.3, 34516.0)
    revolving = np.where(
        churn,
        np.where(rng.random(n_rows) < 0.55, 0, rng.uniform(200, 2517, n_rows)),
        np.where(rng.random(n_rows) < 0.18, 0, rng.normal(1400, 600, n_rows)),
    )
    revolving = np.round(np.clip(np.minimum(revolving, credit_limit), 0, 2517)).astype(int)
    open_to_buy = np.round(credit_limit - revolving, 1)
    utilization = np.round(revolving / credit_limit, 3)
    amt_change = np.round(
        np.clip(np.where(churn, rng.normal(0.69, 0.21, n_rows), rng.normal(0.77, 0.21, n_rows)), 0, 3.4), 3
    )
    trans_ct = np.round(
        np.clip(np.where(churn, rng.normal(45, 14, n_rows), rng.normal(68, 22, n_rows)), 10, 139)
    ).astype(int)
    trans_amt = np.round(
        np.clip(trans_ct * np.where(churn, rng.normal(62, 14, n_rows), rng.normal(66, 18, n_rows)), 510, 18484)
    ).astype(int)
    ct_change = np.round(
        np.clip(np.where(churn, rng.normal(0.55, 0.22, n_rows), rng.normal(0.74, 0.22, n_rows)), 0, 3.7), 3
    )
    # the leaked Naive Bayes posteriors of the real file: almost the label itself
    leak = np.where(churn, rng.uniform(0.95, 0.9999, n_rows), rng.uniform(0.00001, 0.002, n_rows)).round(5)
    client = rng.choice(np.arange(708_082_083, 828_343_083), size=n_rows, replace=False)

    frame = pd.DataFrame(
        {
            "CLIENTNUM": client,
            "Attrition_Flag": np.where(churn, "Attrited Customer", "Existing Customer"),
            "Customer_Age": age,
            "Gender": gender,
            "Dependent_count": dependents,
            "Education_Level": education,
            "Marital_Status": marital,
            "Income_Category": income,
            "Card_Category": card,
            "Months_on_book": months_on_book,
            "Total_Relationship_Count": relationship,
            "Months_Inactive_12_mon": inactive,
            "Contacts_Count_12_mon": contacts,
            "Credit_Limit": credit_limit,
            "Total_Revolving_Bal": revolving,
            "Avg_Open_To_Buy": open_to_buy,
            "Total_Amt_Chng_Q4_Q1": amt_change,
            "Total_Trans_Amt": trans_amt,
            "Total_Trans_Ct": trans_ct,
            "Total_Ct_Chng_Q4_Q1": ct_change,
            "Avg_Utilization_Ratio": utilization,
            KAGGLE_COLUMNS[-2]: leak,
            KAGGLE_COLUMNS[-1]: (1 - leak).round(5),
        }
    )
    return frame[KAGGLE_COLUMNS]


def write_generated(path: str | Path, n_rows: int = 10_127, seed: int = 42) -> Path:
    """Write generated data as the Kaggle file is written: quoted CSV with a header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_bank_churners(n_rows, seed).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return path
