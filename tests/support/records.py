"""Records for the contract and API tests: a good one, the bad ones with their reasons, tiny models, a sink."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xgboost as xgb

from mlops.encoding import FeatureEncoder
from mlops.model import ModelBundle
from mlops.model_service import ModelService
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec

GOOD: dict[str, Any] = {
    "customer_age": 45,
    "dependent_count": 3,
    "months_on_book": 39,
    "total_relationship_count": 5,
    "months_inactive_12_mon": 1,
    "contacts_count_12_mon": 3,
    "credit_limit": 12691.0,
    "total_revolving_bal": 777.0,
    "avg_open_to_buy": 11914.0,
    "total_amt_chng_q4_q1": 1.335,
    "total_trans_amt": 1144.0,
    "total_trans_ct": 42,
    "total_ct_chng_q4_q1": 1.625,
    "avg_utilization_ratio": 0.061,
    "gender": "M",
    "marital_status": "Married",
    "card_category": "Blue",
    "education_level": "High School",
    "income_category": "$60K - $80K",
}


def tiny_service(run_id: str = "run-tiny") -> ModelService:
    """A real ModelService over a small booster trained on random rows encoded by the real spec."""
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    encoder = FeatureEncoder(spec)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, encoder.n_features)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(features, labels), 5)
    return ModelService(ModelBundle(booster=booster, spec=spec, run_id=run_id), source="test")


class RecordingSink:
    def __init__(self) -> None:
        self.entries: list[Mapping[str, Any]] = []

    def submit(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entries.extend(records)

    def close(self, timeout: float = 5.0) -> None:
        return None


def with_(**changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            record.pop(key)
        else:
            record[key] = value
    return record


# ----------------------------------------------------------------------------------------------- bad input
BAD_RECORDS = [
    ("no feature at all", {}, "(record)", "none of the spec's features"),
    ("unknown field", with_(shoe_size=42), "shoe_size", "unknown field"),
    ("text for a number", with_(credit_limit="lots"), "credit_limit", 'must be a number, got string "lots"'),
    ("bool for a number", with_(customer_age=True), "customer_age", "must be a number"),
    ("numeric string below minimum", with_(customer_age="12"), "customer_age", ">= 18"),
    ("two spellings of one field", {**with_(), "Customer_Age": 45}, "Customer_Age", "given twice"),
    ("list for a number", with_(customer_age=[45]), "customer_age", "must be a number"),
    ("number for a category", with_(gender=1), "gender", "must be a string"),
    ("object for a category", with_(gender={"v": "M"}), "gender", "must be a string"),
    ("unseen category", with_(card_category="Titanium"), "card_category", "unknown category"),
    ("unseen ordinal level", with_(income_category="$1M +"), "income_category", "unknown category"),
    ("fraction for a whole number", with_(dependent_count=2.5), "dependent_count", "whole number"),
    ("below minimum", with_(customer_age=12), "customer_age", ">= 18"),
    ("above maximum", with_(avg_utilization_ratio=1.5), "avg_utilization_ratio", "<= 1"),
    ("huge integer", with_(avg_open_to_buy=10**400), "avg_open_to_buy", "32-bit float"),
    ("beyond float32", with_(avg_open_to_buy=1e300), "avg_open_to_buy", "32-bit float"),
]


# ----------------------------------------------------------------------------------------------- the record contract
KAGGLE_SPELLING = {
    "CLIENTNUM": 768805383,
    "Attrition_Flag": "Existing Customer",  # the target: ignored when scoring
    "Customer_Age": 45,
    "Gender": "M",
    "Dependent_count": 3,
    "Education_Level": "High School",
    "Marital_Status": "Married",
    "Income_Category": "$60K - $80K",
    "Card_Category": "Blue",
    "Months_on_book": 39,
    "Total_Relationship_Count": 5,
    "Months_Inactive_12_mon": 1,
    "Contacts_Count_12_mon": 3,
    "Credit_Limit": 12691.0,
    "Total_Revolving_Bal": 777,
    "Avg_Open_To_Buy": 11914.0,
    "Total_Amt_Chng_Q4_Q1": 1.335,
    "Total_Trans_Amt": 1144,
    "Total_Trans_Ct": 42,
    "Total_Ct_Chng_Q4_Q1": 1.625,
    "Avg_Utilization_Ratio": 0.061,
    # the leaked columns of the real file: the spec drops them
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_Education_Level_"
    "Months_Inactive_12_mon_1": 9.3e-05,
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_Education_Level_"
    "Months_Inactive_12_mon_2": 0.99991,
}
