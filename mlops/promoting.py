"""The promotion acts against MLflow: judge the challenger (gate, then move `champion`), approve, roll back.

The rules themselves (the gate, the figures, the audit log) are mlops.promotion, pure; this module gathers the
evidence (the newest settled outcomes, else the challenger's held-out test set), scores both models on the very same
rows through their own record contracts, and records every decision in the audit log and as MLflow tags and
description lines on both versions. The Prefect flow (model_orchestration.promote_flow) and the training flow's
auto-promotion both call `judge`.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from mlops import aws, registry, training
from mlops.contract import LABEL
from mlops.feature_store import FeatureStore
from mlops.model import ModelBundle
from mlops.model_service import ModelService
from mlops.performance import NotEnough, realized
from mlops.promotion import OUTCOMES, TEST_SET, AuditLog, Decision, Figures, Gate, decide
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from mlops.stores.ids import utc_now_iso
from mlops.stores.outcomes import open_outcome_store

log = logging.getLogger(__name__)


class PromotionError(RuntimeError):
    """The promotion cannot go ahead (nothing to promote, nothing approved, nothing to roll back to)."""


STALE = "stale"
LOCK_TIMEOUT_S = 120.0


@contextmanager
def promotion_lock(settings: Settings, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """One alias move at a time on this machine (a file lock beside the audit log, which every mover shares)."""
    path = settings.state_dir / "promotion.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    said = False
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    said = True
                    log.warning("waiting for %s: another promotion is moving champion", path)
                if time.monotonic() > deadline:
                    raise PromotionError(f"another promotion holds {path} for over {timeout_s:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def move_champion(settings: Settings, client: Any, name: str, to_version: str, expected: str | None) -> str | None:
    """Compare and set: point `champion` at `to_version` only if it still names `expected` (None: no champion).
    Returns None when moved, else the version it names now (the caller's decision is stale)."""
    with promotion_lock(settings):
        current = _version(client, name, registry.CHAMPION)
        now = str(current.version) if current is not None else None
        if now != (str(expected) if expected is not None else None):
            return now or "(none)"
        client.set_registered_model_alias(name, registry.CHAMPION, str(to_version))
    return None


def _client(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    registry.check_mlflow(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


def _version(client: Any, name: str, alias: str) -> Any | None:
    """None only when the alias does not exist; MLflow failing is raised (a judgement needs both sides)."""
    return registry.alias_version(client, name, alias)


def _bundle(settings: Settings, run_id: str) -> ModelBundle:
    return ModelBundle.from_model_dir(registry.download_model(settings, run_id), run_id=run_id, nthread=1)


def _probabilities(bundle: ModelBundle, records: list[dict[str, Any]]) -> np.ndarray:
    """Through the model's own record contract (unknown fields ignored: a test-set row carries its label)."""
    service = ModelService(bundle, source="promotion", allow_unknown=True)
    return service.predict_records(service.validate(records, indexed=True))


def _figures(labels: list[int], probabilities: np.ndarray) -> Figures:
    found = realized(labels, probabilities.tolist(), 1)
    if isinstance(found, NotEnough):
        raise PromotionError(f"the evidence cannot rank models: {found.reason}")
    return Figures(found.roc_auc, found.brier, found.pr_auc, found.log_loss)


def gather_evidence(
    settings: Settings, client: Any, challenger_run: str
) -> tuple[str, list[dict[str, Any]], list[int]]:
    """(which evidence, records, labels): the newest settled outcomes if enough, else the challenger's test set."""
    try:
        store = open_outcome_store(settings)
        settled = store.settled_inputs(settings.promotion_min_outcomes)
        store.close()
    except Exception as error:  # no outcome store yet: judge on the test set, and say so
        log.warning("outcomes not read (%s): judging on the test set", error)
        settled = []
    labels = [label for _, label in settled]
    if len(settled) >= settings.promotion_min_outcomes and 0 < sum(labels) < len(labels):
        return OUTCOMES, [record for record, _ in settled], labels
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


def judge(settings: Settings, allow_spec_change: bool = False, _rejudged: bool = False) -> Decision:
    """Score both models on the same rows, apply the gate, move `champion` (or wait for approval), record it.

    The move is a compare and set (`move_champion`): if another promotion moved `champion` meanwhile, the decision
    is recorded as stale and judged once more against the new champion."""
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
        moved = move_champion(settings, client, name, challenger.version, champion.version if champion else None)
        if moved is None:
            decision.action = "promoted"
            decision.at = utc_now_iso()
        else:  # another promotion moved it while we judged: this decision is about a champion that is gone
            decision.action = STALE
            decision.reasons = [
                *decision.reasons,
                f"champion moved to version {moved} while this was judged: not promoted; judge again",
            ]
    _record(client, settings, name, decision)
    if decision.action == STALE and not _rejudged:
        try:
            return judge(settings, allow_spec_change, _rejudged=True)
        except PromotionError as error:  # e.g. the same challenger is the champion now
            log.info("stale decision not re-judged: %s", error)
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
    judged_against = (latest.get("champion") or {}).get("version")
    previous = _version(client, name, registry.CHAMPION)
    moved = move_champion(settings, client, name, str(version), judged_against)
    if moved is not None:
        raise PromotionError(
            f"{name} version {version} was judged against champion {judged_against or '(none)'}, but the champion "
            f"is version {moved} now: the decision is stale; run `make promote` again"
        )
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
    moved = move_champion(settings, client, name, target["version"], current.version)
    if moved is not None:
        raise PromotionError(f"{name}: champion moved to version {moved} meanwhile; nothing rolled back, try again")
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
