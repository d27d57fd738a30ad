"""The promotion gate: may the challenger replace the champion? Pure rules, plus the append-only audit log.

The evidence is both models scored on the *same* rows with known labels: the newest settled outcomes when there are
enough of them (the live records, re-scored by both models), else the challenger's held-out test set (rebuilt from
its run's data snapshot and split seed). The gate then asks, in order:

- same feature spec as the champion (a changed spec passes only with `allow_spec_change`, an explicit decision);
- challenger ROC AUC >= PROMOTION_MIN_ROC_AUC and Brier score <= PROMOTION_MAX_BRIER (absolute: the first model
  ever becomes champion on these alone);
- challenger ROC AUC - champion ROC AUC >= PROMOTION_MIN_UPLIFT (when there is a champion).

Every decision, passed or not, with every figure behind it, is one JSON line of the audit log
(STATE_DIR/audit/promotions.jsonl), written with O_APPEND so lines are never interleaved or rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.settings import Settings
from mlops.stores.ids import utc_now_iso

OUTCOMES, TEST_SET = "settled outcomes", "challenger test set"


@dataclass(frozen=True)
class Gate:
    min_roc_auc: float
    max_brier: float
    min_uplift: float
    allow_spec_change: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, allow_spec_change: bool = False) -> Gate:
        return cls(
            settings.promotion_min_roc_auc,
            settings.promotion_max_brier,
            settings.promotion_min_uplift,
            allow_spec_change,
        )


@dataclass(frozen=True)
class Figures:
    roc_auc: float
    brier: float
    pr_auc: float
    log_loss: float


@dataclass
class Decision:
    passed: bool
    reasons: list[str]
    evidence: str  # OUTCOMES or TEST_SET
    rows: int
    challenger: dict[str, Any]  # version, run_id, figures
    champion: dict[str, Any] | None
    gate: dict[str, Any]
    approval: str = "auto"  # auto | manual
    action: str = ""  # promoted | pending approval | refused | stale | approved | rolled back
    at: str = field(default_factory=utc_now_iso)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        champion = self.champion or {}
        vs = (
            f" vs champion v{champion.get('version')} ROC AUC {champion['figures']['roc_auc']:.4f}"
            if champion.get("figures")
            else " (no champion yet)"
        )
        figures = self.challenger["figures"]
        return (
            f"challenger v{self.challenger['version']} ROC AUC {figures['roc_auc']:.4f}, Brier {figures['brier']:.4f}"
            f"{vs} on {self.rows} rows of the {self.evidence}: {'PASSED' if self.passed else 'REFUSED'}"
            + (f" ({'; '.join(self.reasons)})" if self.reasons else "")
        )


def decide(gate: Gate, challenger: Figures, champion: Figures | None, same_spec: bool) -> tuple[bool, list[str]]:
    """The rules of the module docstring; returns (passed, the reasons it did not pass)."""
    reasons: list[str] = []
    if champion is not None and not same_spec and not gate.allow_spec_change:
        reasons.append("the challenger's feature spec differs from the champion's (promote with ALLOW_SPEC_CHANGE=1)")
    if challenger.roc_auc < gate.min_roc_auc:
        reasons.append(f"ROC AUC {challenger.roc_auc:.4f} < PROMOTION_MIN_ROC_AUC {gate.min_roc_auc:g}")
    if challenger.brier > gate.max_brier:
        reasons.append(f"Brier {challenger.brier:.4f} > PROMOTION_MAX_BRIER {gate.max_brier:g}")
    if champion is not None:
        uplift = challenger.roc_auc - champion.roc_auc
        if uplift < gate.min_uplift:
            reasons.append(
                f"ROC AUC uplift {uplift:+.4f} over the champion < PROMOTION_MIN_UPLIFT {gate.min_uplift:+g}"
            )
    return not reasons, reasons


class AuditLog:
    """Append-only JSON lines: every gate decision, approval and rollback. Past `max_bytes` (AUDIT_LOG_MAX_BYTES)
    the file is rotated to `.1` ... `.<keep>`; `records()` reads the rotated files too, oldest first, so a rollback
    still finds the version it needs across a rotation."""

    def __init__(self, path: Path, max_bytes: int | None = None, keep: int = 5) -> None:
        self.path = path
        self.max_bytes, self.keep = max_bytes, keep

    @classmethod
    def of(cls, settings: Settings) -> AuditLog:
        return cls(settings.state_dir / "audit" / "promotions.jsonl", settings.audit_log_max_bytes)

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        self._rotated(self.keep).unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            if self._rotated(n).exists():
                self._rotated(n).rename(self._rotated(n + 1))
        self.path.rename(self._rotated(1))

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.max_bytes and self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._rotate()
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def records(self) -> Iterator[dict[str, Any]]:
        for path in [*(self._rotated(n) for n in range(self.keep, 0, -1)), self.path]:
            if not path.exists():
                continue
            with path.open() as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
