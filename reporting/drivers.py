"""The report's "drivers of risk" section: live mean |contribution| per feature beside the training one.

The window's main model explains a bounded sample of the inputs it answered (REPORT_DRIVERS_SAMPLE rows, seeded,
so the cost of a report stays flat however busy the window was); its training run's logged importance
(mlops/drivers.py) is the yardstick. When the comparison cannot be made (no model run in the window, the model or
its importance unreadable) the section says why instead, and the report is still written.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from mlops.drivers import SHIFT_RATIO, Driver, compare
from mlops.explain import UNITS, mean_abs_contributions
from mlops.model import ModelBundle

SECTION_ID = "drivers-of-risk"
_STYLE = "font-family:system-ui,sans-serif;margin:1rem 2rem"


@dataclass(frozen=True)
class Drivers:
    """The comparison, or `why` it is missing (then `rows` is 0 and `drivers` empty)."""

    run_id: str | None
    rows: int = 0
    drivers: list[Driver] = field(default_factory=list)
    why: str | None = None  # a reason the comparison (or its training half) is missing

    @property
    def top(self) -> list[str]:
        return [d.feature for d in self.drivers[:5]]

    @property
    def shifted(self) -> list[str]:
        return [d.feature for d in self.drivers if d.shifted]


def live_drivers(
    bundle: ModelBundle,
    current: pd.DataFrame,
    training: dict[str, float] | None,
    sample: int,
    why_no_training: str | None = None,
) -> Drivers:
    """The window's rows answered by `bundle`'s run (all rows when the log names no run), at most `sample` of them
    drawn with a fixed seed, explained by that model and compared with `training`."""
    rows = current
    if "model_run_id" in current.columns and bundle.run_id is not None:
        rows = current[current["model_run_id"] == bundle.run_id]
    if len(rows) > sample:
        rows = rows.sample(n=sample, random_state=0)
    if rows.empty:
        return Drivers(bundle.run_id, why=f"no prediction of run {bundle.run_id} in the window")
    live = mean_abs_contributions(bundle, bundle.encoder.encode_frame(rows[bundle.spec.feature_columns]))
    return Drivers(bundle.run_id, len(rows), compare(live, training), why_no_training)


def section(result: Drivers) -> str:
    """The HTML block for the top of a drift report."""
    title = "<h2>Drivers of risk (live mean |contribution| vs training)</h2>"
    if not result.drivers:
        return f'<section id="{SECTION_ID}" style="{_STYLE}">{title}<p>{html.escape(result.why or "")}</p></section>'

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    def change(driver: Driver) -> str:
        ratio = driver.ratio
        return "—" if ratio is None else ("new" if ratio == float("inf") else f"{ratio:.2f}x")

    rows = "".join(
        f"<tr{' class=shifted' if d.shifted else ''}><td>{d.live_rank}</td><td>{html.escape(d.feature)}</td>"
        f'<td class="num live">{number(d.live)}</td><td class="num training">{number(d.training)}</td>'
        f'<td class="num">{change(d)}</td><td class="num">{d.training_rank or "—"}</td></tr>'
        for d in result.drivers
    )
    note = f"<p>{html.escape(result.why)}</p>" if result.why else ""
    return (
        f'<section id="{SECTION_ID}" style="{_STYLE}">{title}'
        f"<p>Mean |contribution| ({UNITS}) of each feature to the scores of run {html.escape(str(result.run_id))}: "
        f"live over {result.rows} sampled predictions of this window, training over its held-out set. Rows in red "
        f"moved by {SHIFT_RATIO:g}x or more either way: the model leans on that feature differently now.</p>{note}"
        '<table style="border-collapse:collapse"><thead><tr><th>Rank</th><th>Feature</th><th>Live</th>'
        "<th>Training</th><th>Live / training</th><th>Training rank</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<style>#drivers-of-risk td,#drivers-of-risk th{padding:.25rem .7rem;border-bottom:1px solid #ddd}"
        "#drivers-of-risk td.num{text-align:right}#drivers-of-risk tr.shifted td{background:#fde8e8}</style>"
        "</section>"
    )
