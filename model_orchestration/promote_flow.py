"""Prefect flow `promote_challenger`: the gate between `challenger` and `champion` (mlops/promoting.py).

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

from prefect import flow, get_run_logger

from mlops.promoting import PromotionError, approve, judge, rollback
from mlops.settings import Settings, load_flow_settings
from model_orchestration.prefect_process import run_against_prefect

FLOW_NAME = "promote_challenger"


@flow(name=FLOW_NAME, log_prints=True)
def promote_challenger(
    env: str | None = None,
    approve_version: str | None = None,
    do_rollback: bool = False,
    allow_spec_change: bool = False,
    settings_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Judge the challenger (default), approve a pending version, or roll back; returns what was done."""
    settings = load_flow_settings(env, settings_overrides)
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

    def work(settings: Settings) -> int:
        result = promote_challenger(
            env=settings.env,
            approve_version=args.approve,
            do_rollback=args.rollback,
            allow_spec_change=args.allow_spec_change,
        )
        action = result.get("action", "")
        print(f"promote: {action}: {_line(result)}")
        if action == "pending approval":
            print(f"approve with: make promote APPROVE={result['challenger']['version']}")
        return 1 if action == "refused" else 0

    return run_against_prefect("promote", args.env, work, (PromotionError, LookupError, FileNotFoundError))


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
