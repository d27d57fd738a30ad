"""The compiled tree walker gives XGBoost's probability bit for bit, or is not used."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from mlops.model import ModelBundle
from mlops.tree_walker import MAX_ROWS, TreeWalker
from tests.support.records import tiny_service


def _booster(objective: str = "binary:logistic", depth: int = 6, rounds: int = 60, **extra: object) -> xgb.Booster:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2000, 12)).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan  # learned default directions
    labels = (np.nan_to_num(features[:, 0]) + rng.normal(scale=0.7, size=2000) > 0).astype(int)
    params = {"objective": objective, "max_depth": depth, "nthread": 1, "seed": 1, **extra}
    return xgb.train(params, xgb.DMatrix(features, labels, missing=np.nan), rounds)


def _rows(n: int, columns: int = 12, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = (rng.normal(size=(n, columns)) * 1.5).astype(np.float32)
    rows[rng.random(rows.shape) < 0.15] = np.nan
    return rows


@pytest.mark.parametrize("depth", [1, 3, 6, 10])
def test_the_walk_equals_xgboost_bit_for_bit(depth: int) -> None:
    booster = _booster(depth=depth)
    walker = TreeWalker.for_booster(booster)
    assert walker is not None
    rows = _rows(5000)
    expected = booster.inplace_predict(rows, validate_features=False)
    assert np.array_equal(walker.predict(rows), expected)  # not approximately: the same float32


def test_base_score_other_than_the_default_is_respected() -> None:
    booster = _booster(base_score=0.05)
    walker = TreeWalker.for_booster(booster)
    assert walker is not None and np.array_equal(walker.predict(_rows(500)), booster.inplace_predict(_rows(500)))


@pytest.mark.parametrize(
    ("objective", "extra"),
    [("reg:squarederror", {}), ("binary:logitraw", {}), ("binary:logistic", {"booster": "dart", "rate_drop": 0.1})],
)
def test_a_model_it_cannot_mirror_is_left_to_xgboost(objective: str, extra: dict[str, object]) -> None:
    assert TreeWalker.for_booster(_booster(objective, rounds=10, **extra)) is None


def test_a_wrong_width_is_refused() -> None:
    walker = TreeWalker.for_booster(_booster(rounds=5))
    assert walker is not None
    with pytest.raises(ValueError, match="12 features"):
        walker.predict(np.zeros((1, 11), dtype=np.float32))


def test_the_bundle_answers_alike_below_and_above_the_walkers_limit() -> None:
    """A record scored alone (walker) and inside a large batch (XGBoost) gets the same probability."""
    bundle: ModelBundle = tiny_service().bundle
    assert bundle.walker() is not None
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(MAX_ROWS * 4, bundle.encoder.n_features)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    large = bundle.predict_encoded(matrix)
    small = np.concatenate([bundle.predict_encoded(matrix[i : i + 1]) for i in range(len(matrix))])
    assert np.array_equal(large, small)
    assert np.array_equal(bundle.predict_encoded(matrix[:MAX_ROWS]), large[:MAX_ROWS])
