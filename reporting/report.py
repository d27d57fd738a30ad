"""Drift reports, free of Prefect: prediction-log entries -> Evidently HTML report, the reports index, the summary.

reporting/create_report.py wraps these in thin Prefect tasks. The reports folder (served by nginx) holds
`data_report-<UTC time>.html` files, `reports.json` (one summary per report: the index's source) and `index.html`.
Files are written to a temporary name and renamed, so nginx never serves half a report.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.presets import ClassificationPreset, DataDriftPreset

from mlops.atomic_file import write_atomic
from mlops.performance import NotEnough, Performance, realized
from mlops.spec import FeatureSpec
from monitoring.evidently_service.drift import (
    CAT_METHOD,
    COLUMN_THRESHOLD,
    DATASET_DRIFT_SHARE,
    NUM_METHOD,
    DriftResult,
    Reference,
    data_definition,
    feature_frame,
    result_from_snapshot,
)

REPORT_PREFIX = "data_report-"
QUALITY_PREFIX = "quality_report-"
MANIFEST = "reports.json"
INDEX = "index.html"
_STAMP = "%Y%m%dT%H%M%SZ"
_REPORT_NAME = re.compile(rf"^{REPORT_PREFIX}(\d{{8}}T\d{{6}}Z)\.html$")


class NotEnoughData(Exception):
    """Too few predictions in the window for a meaningful drift report; the message says how many and why."""


@dataclass(frozen=True)
class ReportSummary:
    """One report as the index and the prediction store see it."""

    file: str
    created_at: str  # ISO 8601 UTC
    window_start: str
    window_end: str
    rows: int
    reference_rows: int
    drift_share: float
    drifted_columns: int
    dataset_drift: bool
    model_run_ids: list[str]
    reference: str
    drifted: list[str]
    # classification quality over the window's settled predictions (None: not enough outcomes)
    settled: int = 0
    realized_roc_auc: float | None = None
    quality_file: str | None = None
    # drivers of risk (reporting/drivers.py): the live top five, and features whose importance moved
    top_drivers: list[str] = field(default_factory=list)
    shifted_drivers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def report_filename(moment: datetime) -> str:
    return f"{REPORT_PREFIX}{moment.astimezone(UTC).strftime(_STAMP)}.html"


def time_of_report(filename: str) -> datetime | None:
    match = _REPORT_NAME.match(filename)
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC) if match else None


def entries_to_frame(entries: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Prediction-log entries (input dict + prediction + model_run_id) -> features, `prediction`, `model_run_id`."""
    entries = [e for e in entries if isinstance(e.get("input"), Mapping)]  # a malformed row never stops a report
    inputs = pd.DataFrame.from_records([dict(e["input"]) for e in entries]) if entries else pd.DataFrame()
    for column in spec.feature_columns:
        if column not in inputs.columns:
            inputs[column] = None
    frame = feature_frame(inputs, spec)
    frame["prediction"] = [float(e["prediction"]) if e.get("prediction") is not None else None for e in entries]
    frame["model_run_id"] = [e.get("model_run_id") for e in entries]
    return frame


def check_enough(rows: int, min_rows: int, hours: float) -> None:
    if rows < min_rows:
        raise NotEnoughData(
            f"only {rows} predictions in the last {hours:g} h; a drift report needs at least {min_rows} "
            "(DRIFT_MIN_ROWS): no report written"
        )


def main_run_id(frame: pd.DataFrame) -> str | None:
    """The model that served most of the window: its training reference is the one to compare with."""
    counts = Counter(r for r in frame.get("model_run_id", []) if r)
    return counts.most_common(1)[0][0] if counts else None


def build_report(current: pd.DataFrame, reference: Reference, spec: FeatureSpec) -> tuple[Any, DriftResult]:
    """Evidently's DataDriftPreset (same methods and threshold as the drift service) -> (snapshot, result)."""
    features = feature_frame(current, spec)
    preset = DataDriftPreset(
        columns=spec.feature_columns,
        num_method=NUM_METHOD,
        cat_method=CAT_METHOD,
        threshold=COLUMN_THRESHOLD,
        drift_share=DATASET_DRIFT_SHARE,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(features, data_definition=data_definition(spec)), reference.dataset
    )
    return snapshot, result_from_snapshot(snapshot.dict(), spec, len(features), reference.rows)


def summarize(
    filename: str,
    created: datetime,
    window: tuple[datetime, datetime],
    result: DriftResult,
    frame: pd.DataFrame,
    reference: Reference,
) -> ReportSummary:
    return ReportSummary(
        file=filename,
        created_at=created.astimezone(UTC).isoformat(timespec="seconds"),
        window_start=window[0].astimezone(UTC).isoformat(timespec="seconds"),
        window_end=window[1].astimezone(UTC).isoformat(timespec="seconds"),
        rows=result.rows,
        reference_rows=result.reference_rows,
        drift_share=round(result.share, 6),
        drifted_columns=result.drifted_count,
        dataset_drift=result.dataset_drift,
        model_run_ids=sorted({str(r) for r in frame.get("model_run_id", []) if r}),
        reference=reference.source,
        drifted=[c.column for c in result.columns if c.drifted],
    )


# ------------------------------------------------------------------------------------- classification quality
def quality_filename(report_file: str) -> str:
    return report_file.replace(REPORT_PREFIX, QUALITY_PREFIX, 1)


def build_quality(settled: Sequence[Mapping[str, Any]], min_labels: int) -> tuple[Any, Performance] | NotEnough:
    """Evidently's ClassificationPreset over settled predictions (label, probability), with our own figures beside
    it (mlops.performance, the same numbers as the dashboard's); NotEnough below `min_labels` or with one class."""
    labels = [int(r["label"]) for r in settled]
    chances = [float(r["prediction"]) for r in settled]
    figures = realized(labels, chances, min_labels)
    if isinstance(figures, NotEnough):
        return figures
    frame = pd.DataFrame({"target": labels, "prediction": chances})
    definition = DataDefinition(classification=[BinaryClassification(target="target", prediction_probas="prediction")])
    snapshot = Report([ClassificationPreset()]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    return snapshot, figures


def quality_section(quality_file: str | None, figures: Performance | NotEnough) -> str:
    """The block put at the top of a drift report: realized figures and the embedded classification report."""
    if isinstance(figures, NotEnough):
        return (
            '<section id="classification-quality" style="font-family:system-ui,sans-serif;margin:1rem 2rem">'
            f"<h2>Classification quality</h2><p>{html.escape(figures.message)}; send outcomes "
            "(POST /outcomes or make outcomes FILE=...) to see it.</p></section>"
        )
    rows = "".join(
        f"<tr><th>{name}</th><td>{value}</td></tr>"
        for name, value in (
            ("settled predictions", figures.labels),
            ("ROC AUC", f"{figures.roc_auc:.4f}"),
            ("PR AUC", f"{figures.pr_auc:.4f}"),
            ("Brier score", f"{figures.brier:.4f}"),
            ("log loss", f"{figures.log_loss:.4f}"),
            ("calibration error", f"{figures.calibration_error:.4f}"),
            ("observed churn rate", f"{figures.observed_rate:.1%}"),
            ("mean predicted churn", f"{figures.mean_predicted:.1%}"),
        )
    )
    link = html.escape(quality_file or "")
    return (
        '<section id="classification-quality" style="font-family:system-ui,sans-serif;margin:1rem 2rem">'
        "<h2>Classification quality (settled outcomes of this window)</h2>"
        f'<table style="border-collapse:collapse">{rows}</table>'
        f'<p><a href="{link}">Evidently classification report</a></p>'
        f'<iframe src="{link}" title="classification quality" style="width:100%;height:900px;border:0"></iframe>'
        "</section>"
    )


def add_section(report_path: Path, section: str) -> None:
    """Put a section right after the drift report's <body> tag (rewritten atomically): the last added is on top."""
    page = report_path.read_text(encoding="utf-8")
    match = re.search(r"<body[^>]*>", page)
    at = match.end() if match else 0
    write_atomic(report_path, page[:at] + section + page[at:])


# ------------------------------------------------------------------------------------------- the reports folder
def read_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return []  # a damaged manifest only costs the columns; the index still lists the files
    return [d for d in data if isinstance(d, dict) and "file" in d] if isinstance(data, list) else []


def add_to_manifest(folder: Path, summary: ReportSummary) -> list[dict[str, Any]]:
    entries = [e for e in read_manifest(folder) if e["file"] != summary.file] + [summary.as_dict()]
    write_atomic(folder / MANIFEST, json.dumps(entries, indent=2))
    return entries


def prune(folder: Path, keep: int) -> list[str]:
    """Keep the newest `keep` reports (REPORTS_KEEP): older ones leave with their quality page and manifest entry.
    Their figures stay in the prediction store's report summaries. Returns the files removed."""
    reports = sorted(
        (p for p in folder.glob(f"{REPORT_PREFIX}*.html") if time_of_report(p.name) is not None),
        key=lambda p: time_of_report(p.name),  # type: ignore[arg-type,return-value]
        reverse=True,
    )
    gone = [p.name for p in reversed(reports[keep:])]  # oldest first
    for name in gone:
        for path in (folder / name, folder / quality_filename(name)):
            path.unlink(missing_ok=True)
    if gone:
        entries = [e for e in read_manifest(folder) if e["file"] not in set(gone)]
        write_atomic(folder / MANIFEST, json.dumps(entries, indent=2))
    return gone


def index_rows(folder: Path, manifest: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every report file in `folder`, newest first, with its manifest summary when there is one."""
    known = {e["file"]: e for e in manifest}
    rows = []
    for path in folder.glob(f"{REPORT_PREFIX}*.html"):
        moment = time_of_report(path.name)
        if moment is None:
            continue
        rows.append(
            {"file": path.name, "time": moment, **{k: v for k, v in known.get(path.name, {}).items() if k != "file"}}
        )
    return sorted(rows, key=lambda r: r["time"], reverse=True)


def render_index(rows: Sequence[Mapping[str, Any]], generated: datetime) -> str:
    """index.html: a plain table (no JS) linking every report, newest first."""

    def cell(value: Any) -> str:
        return html.escape("—" if value is None else str(value))

    body = []
    for row in rows:
        share = row.get("drift_share")
        share_text = f"{share:.1%}" if isinstance(share, int | float) else "—"
        flag = ' class="drift"' if row.get("dataset_drift") else ""
        drifted = ", ".join(row.get("drifted") or []) or "—"
        auc = row.get("realized_roc_auc")
        auc_text = f"{auc:.3f} ({row.get('settled')} outcomes)" if isinstance(auc, int | float) else "—"
        body.append(
            f'<tr{flag}><td><a href="{html.escape(row["file"])}">{row["time"]:%Y-%m-%d %H:%M:%S} UTC</a></td>'
            f'<td class="num">{cell(row.get("rows"))}</td><td class="num">{share_text}</td>'
            f'<td class="num">{cell(row.get("drifted_columns"))}</td><td>{html.escape(drifted)}</td>'
            f'<td class="num auc">{html.escape(auc_text)}</td></tr>'
        )
    table = "\n".join(body) or '<tr><td colspan="6">No report yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Churn model: data drift reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .35rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }} tr.drift td {{ background: #fde8e8; }}
</style></head>
<body>
<h1>Data drift reports</h1>
<p>Live predictions compared with the served model's training reference (Evidently); realized ROC AUC over the
window's predictions whose outcome is known (— when there are too few). Newest first;
rows in red: at least {DATASET_DRIFT_SHARE:.0%} of the features drifted. Updated {generated:%Y-%m-%d %H:%M:%S} UTC.</p>
<table id="reports">
<thead><tr><th>Report time</th><th>Rows</th><th>Drift share</th><th>Drifted features</th><th>Which</th>
<th>Realized ROC AUC</th></tr></thead>
<tbody>
{table}
</tbody></table>
</body></html>
"""


def write_index(folder: Path, generated: datetime) -> Path:
    path = folder / INDEX
    write_atomic(path, render_index(index_rows(folder, read_manifest(folder)), generated))
    return path


def write_report_html(snapshot: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    snapshot.save_html(str(scratch))
    os.replace(scratch, path)
    return path
