"""Pure training logic: splits, the hyperopt search space, fitting one XGBoost trial, scoring.

No MLflow, no Prefect, no S3 here: the flow wraps these functions and does the logging.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from hyperopt import STATUS_OK, Trials, fmin, hp, space_eval, tpe
from hyperopt.base import JOB_STATE_ERROR
from hyperopt.pyll import scope
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from mlops.data import LABEL, resolve_duplicate_ids
from mlops.encoding import FeatureEncoder
from mlops.spec import FeatureSpec

MAX_ROUNDS = 1000
EARLY_STOPPING = 40

SEARCH_SPACE: dict[str, Any] = {
    "max_depth": scope.int(hp.quniform("max_depth", 3, 10, 1)),
    "learning_rate": hp.loguniform("learning_rate", math.log(0.01), math.log(0.3)),
    "min_child_weight": hp.loguniform("min_child_weight", math.log(0.5), math.log(20)),
    "subsample": hp.uniform("subsample", 0.6, 1.0),
    "colsample_bytree": hp.uniform("colsample_bytree", 0.5, 1.0),
    "reg_lambda": hp.loguniform("reg_lambda", math.log(1e-3), math.log(10)),
    "reg_alpha": hp.loguniform("reg_alpha", math.log(1e-4), math.log(1)),
    "gamma": hp.uniform("gamma", 0.0, 2.0),
}


@dataclass
class Split:
    """Encoded train/validation/test matrices of one data set, plus the clean test rows for examples."""

    spec: FeatureSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_frame: pd.DataFrame
    sizes: dict[str, int] = field(default_factory=dict)


def resolve_spec(spec: FeatureSpec, frame: pd.DataFrame) -> FeatureSpec:
    """Learn categories the spec leaves open from the training data."""
    return spec.resolve({c: frame[c].dropna().unique() for c in spec.categorical})


def split_data(frame: pd.DataFrame, spec: FeatureSpec, seed: int, valid: float = 0.2, test: float = 0.2) -> Split:
    """Stratified train/validation/test split (60/20/20 by default), then encoding with the resolved spec.

    Ids are made unique first (the spec's `duplicate_ids` policy), so no customer is on both sides of a split.
    """
    frame, _ = resolve_duplicate_ids(frame, spec)
    spec = resolve_spec(spec, frame)
    labels = frame[LABEL].to_numpy()
    if min(np.bincount(labels.astype(int), minlength=2)) < 5:
        raise ValueError("too few rows of the minority class to split stratified (need at least 5)")
    rest, test_frame = train_test_split(frame, test_size=test, stratify=labels, random_state=seed)
    train_frame, valid_frame = train_test_split(
        rest, test_size=valid / (1 - test), stratify=rest[LABEL], random_state=seed
    )
    encoder = FeatureEncoder(spec)
    return Split(
        spec=spec,
        x_train=encoder.encode_frame(train_frame),
        y_train=train_frame[LABEL].to_numpy(),
        x_valid=encoder.encode_frame(valid_frame),
        y_valid=valid_frame[LABEL].to_numpy(),
        x_test=encoder.encode_frame(test_frame),
        y_test=test_frame[LABEL].to_numpy(),
        test_frame=test_frame.reset_index(drop=True),
        sizes={"train": len(train_frame), "valid": len(valid_frame), "test": len(test_frame)},
    )


def booster_params(params: dict[str, Any], seed: int, nthread: int) -> dict[str, Any]:
    return {
        **params,
        "max_depth": int(params["max_depth"]),
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "seed": seed,
        "nthread": nthread,
    }


@dataclass
class TrialResult:
    booster: xgb.Booster
    params: dict[str, Any]
    best_rounds: int
    metrics: dict[str, float]


def fit_trial(split: Split, params: dict[str, Any], seed: int, nthread: int) -> TrialResult:
    """Fit on train with early stopping on validation; report validation AUC, log loss and fit time."""
    started = time.perf_counter()
    dtrain = xgb.DMatrix(split.x_train, label=split.y_train, feature_names=None)
    dvalid = xgb.DMatrix(split.x_valid, label=split.y_valid)
    booster = xgb.train(
        booster_params(params, seed, nthread),
        dtrain,
        num_boost_round=MAX_ROUNDS,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=EARLY_STOPPING,
        verbose_eval=False,
    )
    fit_seconds = time.perf_counter() - started
    best_rounds = booster.best_iteration + 1
    predicted = booster.predict(dvalid, iteration_range=(0, best_rounds))
    metrics = {
        "valid_auc": float(roc_auc_score(split.y_valid, predicted)),
        "valid_logloss": float(log_loss(split.y_valid, predicted, labels=[0, 1])),
        "fit_seconds": fit_seconds,
        "best_rounds": float(best_rounds),
    }
    return TrialResult(booster=booster, params=params, best_rounds=best_rounds, metrics=metrics)


@dataclass(frozen=True)
class SearchOutcome:
    params: dict[str, Any]  # the best trial's, as the search space gives them (space_eval)
    rounds: int  # its boosting rounds at early stopping
    valid_auc: float
    trials: int
    peak_parallel: int = 1  # most trials running at once (hyperopt's book and refresh times): 1 when serial


@dataclass(frozen=True)
class TrialReport:
    """One finished trial as the driver sees it: what the flow logs as an MLflow child run. (Not the booster: with
    SparkTrials the fit happened on an executor, and only this small record comes back.)"""

    number: int  # 1-based, in the order the search suggested the trials
    params: dict[str, Any]
    metrics: dict[str, float]
    rounds: int
    started: float  # epoch seconds around the fit, wherever it ran
    ended: float


TrialHook = Callable[[TrialReport], None]


class _Reporter:
    """Hands each finished trial to the hook once, on the driver: hyperopt calls it (as its early-stop check, which
    never stops) after every trial in order, and SparkTrials' dispatcher thread as trials finish in any order."""

    def __init__(self, on_trial: TrialHook | None) -> None:
        self.on_trial, self.seen, self.lock = on_trial, set[int](), threading.Lock()
        self.error: BaseException | None = None  # the hook's failure (MLflow refusing trials): stops the search

    def __call__(self, trials: Any, *args: Any) -> tuple[bool, tuple[Any, ...]]:
        """hyperopt's early-stop callback: True (stop) only once the hook failed. Not raised here: in SparkTrials'
        dispatcher thread an exception would end the thread and leave the search waiting; `search` raises it."""
        try:
            self._report(trials)
        except Exception as error:
            self.error = self.error or error
        return self.error is not None, args

    def _report(self, trials: Any) -> None:
        with self.lock:
            for trial in trials.trials:
                result = trial.get("result") or {}
                if trial["tid"] in self.seen or result.get("status") != STATUS_OK:
                    continue
                self.seen.add(trial["tid"])
                if self.on_trial is not None:
                    report = TrialReport(
                        trial["tid"] + 1,
                        result["params"],
                        result["metrics"],
                        result["rounds"],
                        result["started"],
                        result["ended"],
                    )
                    self.on_trial(report)


def _trials(parallelism: int, spark: Any | None) -> Trials:
    if parallelism == 1:
        return Trials()
    from hyperopt import SparkTrials

    return SparkTrials(parallelism=parallelism, spark_session=spark)


def search(
    split: Split,
    max_evals: int,
    seed: int,
    nthread: int,
    on_trial: TrialHook | None = None,
    show_progress: bool = False,
    parallelism: int = 1,
    spark: Any | None = None,
) -> SearchOutcome:
    """TPE over SEARCH_SPACE minimizing 1 - validation AUC, seeded. `on_trial` runs on this side after every fit:
    the flow logs the trial to MLflow there, the bare loop of bench/bench_train.py passes nothing; both run this one
    search. `parallelism` > 1 runs that many trials at once as Spark tasks on `spark`'s cluster (hyperopt's
    SparkTrials); 1 runs them here one after another, and gives the same search as SparkTrials with parallelism 1."""
    history = _trials(parallelism, spark)
    reporter = _Reporter(on_trial)

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        started = time.time()
        result = fit_trial(split, params, seed, nthread)
        return {
            "loss": 1.0 - result.metrics["valid_auc"],
            "status": STATUS_OK,
            "rounds": result.best_rounds,
            "params": dict(params),
            "metrics": result.metrics,
            "started": started,
            "ended": time.time(),
        }

    try:
        best = fmin(
            objective,
            SEARCH_SPACE,
            algo=tpe.suggest,
            max_evals=max_evals,
            trials=history,
            rstate=np.random.default_rng(seed),
            show_progressbar=show_progress,
            early_stop_fn=reporter,
        )
    finally:
        _raise_failed_trial(history)
    reporter(history)  # the last trials SparkTrials' dispatcher finished after its last look
    if reporter.error is not None:
        raise reporter.error
    result = history.best_trial["result"]
    return SearchOutcome(
        space_eval(SEARCH_SPACE, best),
        int(result["rounds"]),
        1.0 - result["loss"],
        len(history.trials),
        peak_parallel(history.trials),
    )


def peak_parallel(trials: list[dict[str, Any]]) -> int:
    """The most trials that were running at the same moment, from when each was handed out (book_time) to when its
    result came back (refresh_time): what parallelism the search really got."""
    events = sorted(
        (moment, step)
        for trial in trials
        if trial.get("book_time") and trial.get("refresh_time")
        for moment, step in ((trial["book_time"], 1), (trial["refresh_time"], -1))
    )
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant: touching is not overlapping
        running += step
        peak = max(peak, running)
    return max(peak, 1)


def _raise_failed_trial(history: Trials) -> None:
    """A trial that failed on a Spark executor fails the search, as it does when trials run here."""
    for trial in history.trials:
        if trial.get("state") == JOB_STATE_ERROR:
            kind, text = trial["misc"].get("error", ("error", "?"))
            raise RuntimeError(f"hyperopt trial {trial['tid'] + 1} failed on Spark: {kind}: {text}")


def refit(split: Split, params: dict[str, Any], rounds: int, seed: int, nthread: int) -> xgb.Booster:
    """Refit the best parameters on train + validation for the number of rounds early stopping chose."""
    x = np.vstack([split.x_train, split.x_valid])
    y = np.concatenate([split.y_train, split.y_valid])
    # a little more data deserves a few more rounds (the usual 1/(1-valid share) scaling)
    scaled_rounds = max(1, round(rounds * len(y) / len(split.y_train)))
    return xgb.train(booster_params(params, seed, nthread), xgb.DMatrix(x, label=y), num_boost_round=scaled_rounds)


def score(y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    predicted = (probability >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "pr_auc": float(average_precision_score(y_true, probability)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "brier": float(brier_score_loss(y_true, probability)),
        "logloss": float(log_loss(y_true, probability, labels=[0, 1])),
    }
