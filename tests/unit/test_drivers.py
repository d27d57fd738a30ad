"""Drivers of risk (mlops.drivers, reporting.drivers): global importance is the mean |contribution| the booster
gives, the comparison ranks and flags features, the report section says why when it has nothing to compare."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from batch.testing import tiny_bundle
from mlops.data import clean, generate_bank_churners
from mlops.drivers import compare, describe_top, importance_document, importance_figure, top_drivers
from mlops.explain import feature_contributions
from mlops.model import ModelBundle
from monitoring.evidently_service.drift import feature_frame
from reporting.drivers import Drivers, live_drivers, section


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return tiny_bundle(rounds=40, run_id="run-a")


@pytest.fixture(scope="module")
def frame(bundle: ModelBundle) -> pd.DataFrame:
    rows = clean(generate_bank_churners(600, seed=5), bundle.spec, require_target=False)
    return feature_frame(rows[bundle.spec.feature_columns], bundle.spec)


def test_importance_is_the_mean_absolute_contribution_of_each_feature(bundle: ModelBundle, frame: pd.DataFrame) -> None:
    matrix = bundle.encoder.encode_frame(frame)
    document = importance_document(bundle, matrix, "held-out test set")
    contributions, _ = feature_contributions(bundle, matrix)
    expected = dict(zip(bundle.spec.feature_columns, np.abs(contributions).mean(axis=0), strict=True))
    assert document["rows"] == len(frame) and document["units"] == "log-odds"
    importance = document["importance"]
    assert importance.keys() == expected.keys()
    for feature, value in importance.items():
        assert value == pytest.approx(expected[feature], abs=1e-12)
    assert list(importance.values()) == sorted(importance.values(), reverse=True)  # largest first
    assert max(importance.values()) > 0


def test_the_description_names_the_five_largest_drivers_in_order() -> None:
    importance = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.05, "e": 0.3, "f": 0.2, "g": 0.0}
    assert top_drivers(importance) == ["b", "c", "e", "f", "a"]
    text = describe_top(importance)
    assert text.startswith("Top drivers (mean |contribution| on the held-out set, log-odds): b 0.900, c 0.500")
    assert "d " not in text and "g " not in text


def test_the_importance_plot_is_a_png_with_every_feature(bundle: ModelBundle) -> None:
    importance = {f: float(i) for i, f in enumerate(bundle.spec.feature_columns)}
    figure = importance_figure(importance, "drivers")
    assert len(figure.axes[0].patches) == len(importance)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    assert out.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_ranks_live_against_training_and_flags_what_moved() -> None:
    live = {"a": 0.3, "b": 0.2, "c": 0.2, "d": 0.0}
    training = {"a": 0.1, "b": 0.2, "c": 0.4, "d": 0.0}
    got = {d.feature: d for d in compare(live, training)}
    assert [d.feature for d in compare(live, training)] == ["a", "b", "c", "d"]
    assert got["a"].ratio == pytest.approx(3.0) and got["a"].shifted and got["a"].training_rank == 3
    assert got["b"].ratio == pytest.approx(1.0) and not got["b"].shifted
    assert got["c"].ratio == pytest.approx(0.5) and got["c"].shifted  # halved counts as moved too
    assert got["d"].ratio == 1.0 and not got["d"].shifted  # unused then and now
    assert math.isinf(compare({"x": 0.1}, {"x": 0.0})[0].ratio or 0)
    alone = compare(live, None)
    assert all(d.training is None and d.ratio is None and not d.shifted for d in alone)


def test_live_drivers_explain_only_the_runs_own_rows_in_a_bounded_sample(
    bundle: ModelBundle, frame: pd.DataFrame
) -> None:
    current = frame.assign(model_run_id=["run-a" if i % 3 else "run-b" for i in range(len(frame))])
    training = importance_document(bundle, bundle.encoder.encode_frame(frame), "x")["importance"]
    result = live_drivers(bundle, current, training, sample=100)
    assert result.rows == 100 and result.why is None
    assert len(result.drivers) == len(bundle.spec.feature_columns) and len(result.top) == 5
    # the same sample again (seeded): the figures are the report's, not a random draw's
    again = live_drivers(bundle, current, training, sample=100)
    assert [(d.feature, d.live) for d in again.drivers] == [(d.feature, d.live) for d in result.drivers]
    everything = live_drivers(bundle, current, training, sample=10_000)
    assert everything.rows == int((current["model_run_id"] == "run-a").sum())
    none = live_drivers(bundle, current.assign(model_run_id="run-z"), training, sample=100)
    assert none.drivers == [] and "no prediction of run run-a" in (none.why or "")


def test_the_section_shows_the_table_or_says_why(bundle: ModelBundle, frame: pd.DataFrame) -> None:
    current = frame.assign(model_run_id="run-a")
    doubled = {
        f: v * 2 for f, v in importance_document(bundle, bundle.encoder.encode_frame(frame), "x")["importance"].items()
    }
    page = section(live_drivers(bundle, current, doubled, sample=1000))
    assert 'id="drivers-of-risk"' in page and "<th>Live / training</th>" in page
    assert page.count("<tr class=shifted>") == sum(1 for v in doubled.values() if v > 0)  # every used one halved
    assert "0.50x" in page
    missing = section(Drivers("run-a", why="the model of run run-a could not be loaded (boom)"))
    assert "could not be loaded (boom)" in missing and "<table" not in missing
    live_only = section(live_drivers(bundle, current, None, sample=50, why_no_training="no training importance"))
    assert "no training importance" in live_only and "<table" in live_only and "<tr class=shifted>" not in live_only
