"""training.search: the one TPE search of the flow and of bench_train's bare loop."""

from __future__ import annotations

import pytest

from mlops import training
from mlops.data import clean, generate_bank_churners
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec


def test_every_trial_reaches_the_hook_and_the_best_one_is_returned() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    data = training.split_data(clean(generate_bank_churners(600, seed=3), spec), spec, seed=5)
    seen: list[tuple[int, float, int]] = []

    def hook(trial: training.TrialReport) -> None:
        assert trial.started <= trial.ended
        assert set(trial.params) == set(training.SEARCH_SPACE)
        seen.append((trial.number, trial.metrics["valid_auc"], trial.rounds))

    found = training.search(data, 4, seed=9, nthread=1, on_trial=hook)
    assert [n for n, _, _ in seen] == [1, 2, 3, 4]
    best = max(seen, key=lambda trial: trial[1])
    assert (found.valid_auc, found.rounds, found.trials) == (best[1], best[2], 4)
    assert set(found.params) == set(training.SEARCH_SPACE)
    assert isinstance(found.params["max_depth"], int)
    again = training.search(data, 4, seed=9, nthread=1)  # seeded: the same search without a hook
    assert (again.params, again.rounds, again.valid_auc) == (found.params, found.rounds, found.valid_auc)


def test_a_failing_hook_stops_the_search_and_its_error_is_raised() -> None:
    spec = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
    data = training.split_data(clean(generate_bank_churners(600, seed=3), spec), spec, seed=5)
    seen: list[int] = []

    def hook(trial: training.TrialReport) -> None:
        seen.append(trial.number)
        if trial.number == 2:
            raise RuntimeError("logging trials to MLflow failed: refused")

    with pytest.raises(RuntimeError, match="refused"):
        training.search(data, 6, seed=9, nthread=1, on_trial=hook)
    assert seen == [1, 2]  # stopped at the failure, not after six fits
