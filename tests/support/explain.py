"""The one check that reasons add up: bias + contributions + other == the logit of the answer."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_sums_to_logit(explanations: list[dict[str, Any]], chances: np.ndarray, what: str) -> None:
    """To XGBoost's float32 sums (~2e-6 x (1 + |logit|) measured, 1e-5 allowed) plus the answer's own float32
    resolution, which at p near 0 or 1 is coarse in log-odds."""
    total = np.array(
        [e["bias"] + e["other"] + sum(c["contribution"] for c in e["contributions"]) for e in explanations]
    )
    logit = np.log(chances / (1 - chances))
    resolution = np.spacing(chances.astype(np.float32)).astype(np.float64) / (chances * (1 - chances))
    gap = np.abs(total - logit)
    assert (gap <= 1e-5 * (1 + np.abs(logit)) + 2 * resolution).all(), f"{what}: worst gap {gap.max()}"
