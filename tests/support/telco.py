"""Raw data for the second spec (tests/data/telco_spec.yaml): a different schema with a learnable signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPEC_PATH = Path(__file__).parents[1] / "data" / "telco_spec.yaml"


def telco_frame(rows: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    charges = rng.uniform(20, 120, rows).round(2)
    calls = rng.poisson(2, rows)
    contract = rng.choice(["monthly", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    score = 0.04 * calls - 0.03 * tenure + 0.015 * charges + np.where(contract == "monthly", 1.0, -0.5)
    churned = rng.random(rows) < 1 / (1 + np.exp(-(score - 0.3)))
    return pd.DataFrame(
        {
            "Customer ID": [f"C{i:05d}" for i in range(rows)],
            "Tenure Months": tenure,
            "Monthly Charges": charges,
            "Support Calls": calls,
            "Contract": contract,
            "Payment Method": rng.choice(["Card", "Transfer", "Cash", "n/a"], rows),
            "Plan Tier": rng.choice(["basic", "plus", "premium", "?"], rows),
            "Churned": np.where(churned, "yes", "no"),
        }
    )
