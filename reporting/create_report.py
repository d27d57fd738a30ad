"""The Prefect flow `create_report`: last window of predictions vs the training reference -> HTML report + index.

    python -m reporting.create_report              # now, over the last REPORT_WINDOW_HOURS (3 h)   (make report)
    python -m reporting.create_report --hours 24

With fewer than DRIFT_MIN_ROWS predictions in the window it writes nothing, says why, and exits 0 (an idle
period is not a failure). When at least OUTCOME_MIN_LABELS of the window's predictions are settled by outcomes,
the report gains a classification-quality section (Evidently's ClassificationPreset, `quality_report-*.html`,
embedded) and the index its realized ROC AUC. Every written report's summary also goes into the prediction store
(`write_summary`). A "drivers of risk" section compares the window's mean |contribution| per feature, from the
window's main model on a bounded sample (REPORT_DRIVERS_SAMPLE), with the one its training run logged
(reporting/drivers.py). Tasks are thin wrappers over reporting/report.py and reporting/drivers.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from mlops.drivers import logged_importance
from mlops.model_service import load_bundle
from mlops.settings import Settings, load_flow_settings
from mlops.spec import FeatureSpec
from mlops.stores.prediction_log import open_store
from monitoring.evidently_service.drift import Reference, prepare_reference
from monitoring.evidently_service.reference import ReferenceLoader
from reporting import drivers, report

FLOW_NAME = "create_report"


@task(name="read predictions", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def read_window(settings: Settings, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The window's newest REPORT_MAX_ROWS predictions (an indexed read): a report's memory and time stay flat
    however busy the window was; the report's row count says how many it compared."""
    store = open_store(settings.prediction_log_location)
    try:
        return store.read(since, until, settings.report_max_rows)
    finally:
        store.close()


@task(name="read settled outcomes", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def read_settled(settings: Settings, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The window's newest REPORT_MAX_ROWS settlements, as bounded as the predictions read beside them."""
    from mlops.stores.outcomes import open_outcome_store

    store = open_outcome_store(settings)
    try:
        return store.settled_between(since, until, settings.report_max_rows)
    finally:
        store.close()


@task(name="load reference", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def load_reference(settings: Settings, spec: FeatureSpec, run_id: str | None) -> Reference:
    frame, source = ReferenceLoader(settings).load(spec.name, run_id)
    return prepare_reference(frame, spec, source)


@task(name="drivers of risk", cache_policy=NONE)
def explain_window(settings: Settings, current: Any, run_id: str | None) -> drivers.Drivers:
    """Live mean |contribution| of the window's main model beside its training figures; any failure here costs
    the section its table (it says why), never the report."""
    logger = get_run_logger()
    if run_id is None:
        return drivers.Drivers(None, why="no model run is named in the window's predictions: nothing to explain")
    try:
        bundle = load_bundle(settings, run_id)
    except Exception as error:  # MLflow unreachable, the run or its artifacts gone, an unreadable booster
        why = f"the model of run {run_id} could not be loaded ({type(error).__name__}: {error})"
        logger.warning("drivers of risk left out: %s", why)
        return drivers.Drivers(run_id, why=why)
    why = None
    try:
        training = logged_importance(settings.mlflow_tracking_uri, run_id)
    except Exception as error:
        training, why = None, f"the training importance of run {run_id} could not be read ({error})"
    if training is None and why is None:
        why = f"run {run_id} logged no training importance (trained before it was logged): live figures only"
    if why:
        logger.warning("drivers of risk: %s", why)
    return drivers.live_drivers(bundle, current, training, settings.report_drivers_sample, why)


@task(name="write report", cache_policy=NONE)
def write_report(
    settings: Settings,
    spec: FeatureSpec,
    current: Any,
    reference: Reference,
    window: tuple[datetime, datetime],
    created: datetime,
    settled: list[dict[str, Any]],
    explained: drivers.Drivers,
) -> report.ReportSummary:
    snapshot, result = report.build_report(current, reference, spec)
    folder = settings.reports_location
    filename = report.report_filename(created)
    report.write_report_html(snapshot, folder / filename)
    summary = report.summarize(filename, created, window, result, current, reference)
    report.add_section(folder / filename, drivers.section(explained))
    summary = replace(summary, top_drivers=explained.top, shifted_drivers=explained.shifted)
    quality = report.build_quality(settled, settings.outcome_min_labels)
    if isinstance(quality, report.NotEnough):
        report.add_section(folder / filename, report.quality_section(None, quality))
    else:
        quality_snapshot, figures = quality
        quality_file = report.quality_filename(filename)
        report.write_report_html(quality_snapshot, folder / quality_file)
        report.add_section(folder / filename, report.quality_section(quality_file, figures))
        summary = replace(
            summary, settled=figures.labels, realized_roc_auc=round(figures.roc_auc, 6), quality_file=quality_file
        )
    report.add_to_manifest(folder, summary)
    report.prune(folder, settings.reports_keep)
    report.write_index(folder, created)
    return summary


@task(name="store summary", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def store_summary(settings: Settings, summary: dict[str, Any]) -> None:
    store = open_store(settings.prediction_log_location)
    try:
        store.write_summary(summary)
    finally:
        store.close()


@flow(name=FLOW_NAME, log_prints=True)
def create_report(
    hours: float | None = None,
    env: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Returns {"status": "written", "summary": {...}, "path": ...} or {"status": "skipped", "reason": ...}."""
    logger = get_run_logger()
    settings = load_flow_settings(env, settings_overrides)
    spec = FeatureSpec.load(settings.feature_spec)
    hours = hours or settings.report_window_hours
    until = datetime.now(UTC)
    since = until - timedelta(hours=hours)
    entries = read_window(settings, since, until)
    if len(entries) >= settings.report_max_rows:
        logger.info("window capped at its newest %d predictions (REPORT_MAX_ROWS)", settings.report_max_rows)
    try:
        report.check_enough(len(entries), settings.drift_min_rows, hours)
    except report.NotEnoughData as why:
        logger.warning(str(why))
        report.write_index(settings.reports_location, until)  # the site exists (and lists older reports)
        return {"status": "skipped", "reason": str(why), "rows": len(entries)}
    current = report.entries_to_frame(entries, spec)
    reference = load_reference(settings, spec, report.main_run_id(current))
    settled = read_settled(settings, since, until)
    explained = explain_window(settings, current, report.main_run_id(current))
    summary = write_report(settings, spec, current, reference, (since, until), until, settled, explained)
    store_summary(settings, summary.as_dict())
    path = settings.reports_location / summary.file
    logger.info(
        "report %s: %d rows, drift share %.1f%% (%d features drifted)",
        path,
        summary.rows,
        100 * summary.drift_share,
        summary.drifted_columns,
    )
    return {"status": "written", "summary": summary.as_dict(), "path": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
    from model_orchestration.prefect_process import run_against_prefect

    parser = argparse.ArgumentParser(prog="python -m reporting.create_report", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--hours", type=float, default=None, help="window to report on (default REPORT_WINDOW_HOURS)")
    args = parser.parse_args(argv)
    if args.hours is not None and args.hours <= 0:
        parser.error("--hours must be positive")

    def work(settings: Settings) -> int:
        outcome = create_report(hours=args.hours, env=settings.env)
        if outcome["status"] == "skipped":
            print(f"report: {outcome['reason']}")
            return 0
        print(f"report written: {outcome['path']}")
        print(f"index: {Path(outcome['path']).parent / report.INDEX}")
        return 0

    return run_against_prefect("report", args.env, work, (LookupError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
