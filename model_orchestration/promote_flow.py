"""Prefect flow `promote_challenger`: the gate between `challenger` and `champion` (rules: mlops/promotion.py).

    make promote             # judge the challenger; moves `champion` if the gate passes (PROMOTION_APPROVAL=auto)
    make promote APPROVE=7   # PROMOTION_APPROVAL=manual: move `champion` to version 7, whose gate passed
    make rollback            # `champion` back to the version it replaced
    python -m model_orchestration.promote_flow --help

Both models are scored on the same rows: the newest PROMOTION_MIN_OUTCOMES settled outcomes (their logged inputs,
re-scored by each model) when there are that many with both labels, else the challenger's held-out test set. The
decision and its figures go to MLflow (tags on both versions, a line in the challenger's description) and to the
audit log; serving that follows the registry (RUN_ID empty) switches in place within MODEL_POLL_SECONDS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from mlops import registry
from mlops.aws import ServiceUnavailable
from mlops.model import ModelBundle
from mlops.performance import NotEnough, realized
from mlops.promotion import OUTCOMES, TEST_SET, AuditLog, Decision, Figures, Gate, decide
from mlops.settings import ConfigurationError, Settings, load_settings
from mlops.stores.ids import utc_now_iso

FLOW_NAME = "promote_challenger"


class PromotionError(RuntimeError):
    """The promotion cannot go ahead (nothing to promote, nothing approved, nothing to roll back to)."""


def _client(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    registry.check_mlflow(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


def _version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _bundle(settings: Settings, run_id: str) -> ModelBundle:
    return ModelBundle.from_model_dir(registry.download_model(settings, run_id), run_id=run_id, nthread=1)


def _probabilities(bundle: ModelBundle, records: list[dict[str, Any]]) -> np.ndarray:
    """Through the model's own record contract (unknown fields ignored: a test-set row carries its label)."""
    from mlops.model_service import ModelService

    service = ModelService(bundle, source="promotion", allow_unknown=True)
    return service.predict_records(service.validate(records, indexed=True))


def _figures(labels: list[int], probabilities: np.ndarray) -> Figures:
    found = realized(labels, probabilities.tolist(), 1)
    if isinstance(found, NotEnough):
        raise PromotionError(f"the evidence cannot rank models: {found.reason}")
    return Figures(found.roc_auc, found.brier, found.pr_auc, found.log_loss)


@task(name="gather evidence", cache_policy=NONE)
def gather_evidence(
    settings: Settings, client: Any, challenger_run: str
) -> tuple[str, list[dict[str, Any]], list[int]]:
    """(which evidence, records, labels): the newest settled outcomes if enough, else the challenger's test set."""
    from mlops.stores.outcomes import open_outcome_store

    try:
        store = open_outcome_store(settings)
        settled = store.settled_inputs(settings.promotion_min_outcomes)
        store.close()
    except Exception as error:  # no outcome store yet: judge on the test set, and say so
        get_run_logger().warning("outcomes not read (%s): judging on the test set", error)
        settled = []
    labels = [label for _, label in settled]
    if len(settled) >= settings.promotion_min_outcomes and 0 < sum(labels) < len(labels):
        return OUTCOMES, [record for record, _ in settled], labels
    from mlops import aws, training
    from mlops.contract import LABEL
    from mlops.feature_store import FeatureStore
    from mlops.spec import FeatureSpec

    tags = client.get_run(challenger_run).data.tags
    store = FeatureStore(aws.client("s3", settings), settings)
    spec = FeatureSpec.load(settings.feature_spec)
    frame = store.get_frame(store.resolve(spec.name, tags["data_hash"]), "train.parquet")
    split = training.split_data(frame, spec, int(tags.get("split_seed", settings.seed)))
    test = split.test_frame
    records = test.astype(object).where(test.notna(), None).to_dict("records")
    return TEST_SET, records, [int(v) for v in test[LABEL]]


def _tag(client: Any, name: str, version: str, decision: Decision, role: str) -> None:
    figures = decision.challenger["figures"] if role == "challenger" else (decision.champion or {}).get("figures")
    tags = {
        f"promotion.{role}.decision": decision.action,
        f"promotion.{role}.at": decision.at,
        f"promotion.{role}.evidence": f"{decision.evidence} ({decision.rows} rows)",
    }
    if figures:
        tags |= {f"promotion.{role}.{k}": f"{v:.6f}" for k, v in figures.items() if isinstance(v, float)}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _record(client: Any, settings: Settings, name: str, decision: Decision) -> None:
    """The audit line first (right after the alias moved: whoever sees the new champion finds why), then the
    MLflow tags and description, a few REST calls each."""
    AuditLog.of(settings).append(decision.as_dict() | {"model": name})
    _tag(client, name, decision.challenger["version"], decision, "challenger")
    if decision.champion:
        _tag(client, name, decision.champion["version"], decision, "champion")
    current = client.get_model_version(name, decision.challenger["version"]).description or ""
    client.update_model_version(
        name, decision.challenger["version"], description=f"{current}\n\nPromotion {decision.at}: {decision.summary()}"
    )


def judge(settings: Settings, allow_spec_change: bool = False) -> Decision:
    """Score both models on the same rows, apply the gate, move `champion` (or wait for approval), record it."""
    client = _client(settings)
    name = registry.model_name_for(settings)
    challenger = _version(client, name, registry.CHALLENGER)
    if challenger is None:
        raise PromotionError(f"{name} has no '{registry.CHALLENGER}' version: train one first (make train)")
    champion = _version(client, name, registry.CHAMPION)
    if champion is not None and champion.version == challenger.version:
        raise PromotionError(f"{name} version {challenger.version} is already the champion: nothing to promote")
    evidence, records, labels = gather_evidence(settings, client, challenger.run_id)
    new = _bundle(settings, challenger.run_id)
    new_figures = _figures(labels, _probabilities(new, records))
    old_figures = None
    same_spec = True
    if champion is not None:
        old = _bundle(settings, champion.run_id)
        same_spec = old.spec.feature_columns == new.spec.feature_columns and old.spec.name == new.spec.name
        try:
            old_figures = _figures(labels, _probabilities(old, records))
        except Exception as error:  # the champion cannot read these rows: only a spec change does that
            if not allow_spec_change:
                raise PromotionError(f"the champion cannot score the evidence ({error}); spec changed?") from error
    gate = Gate.from_settings(settings, allow_spec_change)
    passed, reasons = decide(gate, new_figures, old_figures, same_spec)
    decision = Decision(
        passed=passed,
        reasons=reasons,
        evidence=evidence,
        rows=len(labels),
        challenger={"version": challenger.version, "run_id": challenger.run_id, "figures": vars(new_figures)},
        champion=(
            {
                "version": champion.version,
                "run_id": champion.run_id,
                "figures": vars(old_figures) if old_figures else None,
            }
            if champion is not None
            else None
        ),
        gate=vars(gate),
        approval=settings.promotion_approval,
    )
    if not passed:
        decision.action = "refused"
    elif settings.promotion_approval == "manual":
        decision.action = "pending approval"
    else:
        client.set_registered_model_alias(name, registry.CHAMPION, challenger.version)
        decision.action = "promoted"
        decision.at = utc_now_iso()
    _record(client, settings, name, decision)
    return decision


def approve(settings: Settings, version: str) -> dict[str, Any]:
    """Move `champion` to `version` if its newest gate decision passed and waits for approval."""
    client = _client(settings)
    name = registry.model_name_for(settings)
    decisions = [r for r in AuditLog.of(settings).records() if r.get("model") == name]
    latest = next((r for r in reversed(decisions) if r["challenger"]["version"] == str(version)), None)
    if latest is None or latest["action"] != "pending approval":
        state = latest["action"] if latest else "never judged"
        raise PromotionError(
            f"{name} version {version} is not waiting for approval ({state}): run `make promote` first"
        )
    previous = _version(client, name, registry.CHAMPION)
    client.set_registered_model_alias(name, registry.CHAMPION, str(version))
    record = {
        "model": name,
        "action": "approved",
        "challenger": latest["challenger"],
        "champion": {"version": previous.version, "run_id": previous.run_id} if previous else None,
        "judged_at": latest["at"],
        "at": utc_now_iso(),  # when champion moved
    }
    AuditLog.of(settings).append(record)
    client.set_model_version_tag(name, str(version), "promotion.challenger.decision", "approved")
    return record


def rollback(settings: Settings) -> dict[str, Any]:
    """Point `champion` back at the version the current champion replaced (from the audit log)."""
    client = _client(settings)
    name = registry.model_name_for(settings)
    current = _version(client, name, registry.CHAMPION)
    if current is None:
        raise PromotionError(f"{name} has no champion: nothing to roll back")
    moves = [
        r
        for r in AuditLog.of(settings).records()
        if r.get("model") == name and r["action"] in ("promoted", "approved", "rolled back")
    ]
    last = next((r for r in reversed(moves) if r["challenger"]["version"] == current.version), None)
    if last is None or not last.get("champion"):
        raise PromotionError(f"{name} version {current.version} replaced no earlier champion: nothing to roll back to")
    target = last["champion"]
    client.set_registered_model_alias(name, registry.CHAMPION, target["version"])
    record = {
        "model": name,
        "action": "rolled back",
        "challenger": {"version": target["version"], "run_id": target["run_id"]},
        "champion": {"version": current.version, "run_id": current.run_id},
        "at": utc_now_iso(),
    }
    AuditLog.of(settings).append(record)
    client.set_model_version_tag(name, current.version, "promotion.champion.decision", "rolled back")
    return record


@flow(name=FLOW_NAME, log_prints=True)
def promote_challenger(
    env: str | None = None,
    approve_version: str | None = None,
    do_rollback: bool = False,
    allow_spec_change: bool = False,
    settings_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Judge the challenger (default), approve a pending version, or roll back; returns what was done."""
    settings = load_settings(env, **(settings_overrides or {}))
    logger = get_run_logger()
    if do_rollback:
        record = rollback(settings)
        logger.info("champion rolled back to version %s", record["challenger"]["version"])
        return record
    if approve_version is not None:
        record = approve(settings, approve_version)
        logger.info("version %s approved: now champion", approve_version)
        return record
    decision = judge(settings, allow_spec_change)
    logger.info("%s -> %s", decision.summary(), decision.action)
    return decision.as_dict()


def main(argv: Sequence[str] | None = None) -> int:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from model_orchestration.train_flow import check_prefect

    parser = argparse.ArgumentParser(
        prog="python -m model_orchestration.promote_flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--approve", default=None, metavar="VERSION", help="approve a version the gate passed")
    parser.add_argument("--rollback", action="store_true", help="point champion back at the previous one")
    parser.add_argument("--allow-spec-change", action="store_true", help="accept a challenger with another spec")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        check_prefect(settings.prefect_api_url)
        with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
            result = promote_challenger(
                env=settings.env,
                approve_version=args.approve,
                do_rollback=args.rollback,
                allow_spec_change=args.allow_spec_change,
            )
    except (PromotionError, ServiceUnavailable, ConfigurationError, LookupError, FileNotFoundError) as error:
        print(f"promote: error: {error}", file=sys.stderr)
        return 2
    action = result.get("action", "")
    print(f"promote: {action}: {_line(result)}")
    if action == "pending approval":
        print(f"approve with: make promote APPROVE={result['challenger']['version']}")
    return 1 if action == "refused" else 0


def _line(result: dict[str, Any]) -> str:
    figures = result.get("challenger", {}).get("figures") or {}
    champion = result.get("champion") or {}
    parts = [f"challenger v{result.get('challenger', {}).get('version')}"]
    if figures:
        parts.append(f"ROC AUC {figures['roc_auc']:.4f}")
    if champion.get("figures"):
        parts.append(f"champion v{champion['version']} ROC AUC {champion['figures']['roc_auc']:.4f}")
    if result.get("reasons"):
        parts.append("; ".join(result["reasons"]))
    if result.get("rows"):
        parts.append(f"{result['rows']} rows of the {result['evidence']}")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
