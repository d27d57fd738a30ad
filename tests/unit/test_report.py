"""Drift reports without servers: file names, the not-enough-data rule, the report and the index (newest first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops.data import clean, generate_bank_churners
from mlops.spec import FeatureSpec
from monitoring.evidently_service.drift import prepare_reference
from reporting import report


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return FeatureSpec.load("features.yaml")


def entries(frame: pd.DataFrame, spec: FeatureSpec, run_id: str = "run-a") -> list[dict]:
    features = frame[spec.feature_columns].astype(object).where(frame[spec.feature_columns].notna(), None)
    return [
        {"input": record, "prediction": 0.3, "model_run_id": run_id, "request_id": str(i), "timestamp": None}
        for i, record in enumerate(features.to_dict("records"))
    ]


def test_report_names_carry_their_utc_time() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    name = report.report_filename(moment)
    assert name == "data_report-20260304T050607Z.html"
    assert report.time_of_report(name) == moment
    assert report.time_of_report("index.html") is None


def test_too_little_data_is_refused_with_the_reason() -> None:
    with pytest.raises(report.NotEnoughData, match=r"only 12 predictions in the last 3 h.*at least 300"):
        report.check_enough(12, 300, 3)
    report.check_enough(300, 300, 3)  # exactly enough passes


def test_entries_become_features_and_the_main_run_id(spec: FeatureSpec) -> None:
    frame = clean(generate_bank_churners(10, seed=3), spec)
    logged = entries(frame.iloc[:6], spec, "run-a") + entries(frame.iloc[6:], spec, "run-b")
    out = report.entries_to_frame(logged, spec)
    assert list(out.columns) == [*spec.feature_columns, "prediction", "model_run_id"]
    assert len(out) == 10 and out["credit_limit"].dtype == "float64"
    assert report.main_run_id(out) == "run-a"


def test_report_index_and_manifest(tmp_path: Path, spec: FeatureSpec) -> None:
    data = clean(generate_bank_churners(1600, seed=5), spec)
    reference = prepare_reference(data.iloc[:1000], spec, "s3://b/bank_churners/h/reference.parquet")
    current = report.entries_to_frame(entries(data.iloc[1000:], spec), spec)
    shifted = current.copy()
    for column in ("credit_limit", "total_trans_amt", "customer_age", "total_trans_ct"):
        shifted[column] = shifted[column] * 2

    first, second = datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    summaries = []
    for created, frame in ((first, current), (second, shifted)):
        snapshot, result = report.build_report(frame, reference, spec)
        name = report.report_filename(created)
        report.write_report_html(snapshot, tmp_path / name)
        summary = report.summarize(name, created, (created - timedelta(hours=3), created), result, frame, reference)
        report.add_to_manifest(tmp_path, summary)
        summaries.append(summary)
    (tmp_path / "data_report-20250101T000000Z.html").write_text("an old report without a manifest entry")
    index = report.write_index(tmp_path, second).read_text()

    assert summaries[0].rows == 600 and summaries[0].reference_rows == 1000
    assert summaries[1].drift_share > summaries[0].drift_share
    assert {"credit_limit", "total_trans_amt"} <= set(summaries[1].drifted)
    assert summaries[1].model_run_ids == ["run-a"]
    html = (tmp_path / summaries[0].file).read_text()
    assert len(html) > 100_000 and "credit_limit" in html  # Evidently's self-contained page with the data
    positions = [index.index(s.file) for s in reversed(summaries)] + [index.index("data_report-20250101T000000Z")]
    assert positions == sorted(positions), "newest first"
    assert f"{summaries[1].drift_share:.1%}" in index and ">600<" in index
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_empty_index_says_so(tmp_path: Path) -> None:
    text = report.write_index(tmp_path, datetime(2026, 1, 1, tzinfo=UTC)).read_text()
    assert "No report yet." in text


def test_damaged_manifest_still_lists_files(tmp_path: Path) -> None:
    (tmp_path / report.MANIFEST).write_text("{not json")
    (tmp_path / "data_report-20260101T000000Z.html").write_text("x")
    rows = report.index_rows(tmp_path, report.read_manifest(tmp_path))
    assert [r["file"] for r in rows] == ["data_report-20260101T000000Z.html"]


def test_only_the_newest_reports_are_kept_with_their_quality_pages_and_entries(tmp_path: Path) -> None:
    import json

    start = datetime(2026, 1, 1, tzinfo=UTC)
    names = [report.report_filename(start + timedelta(hours=3 * i)) for i in range(6)]
    for name in names:
        (tmp_path / name).write_text("report")
        (tmp_path / report.quality_filename(name)).write_text("quality")
    (tmp_path / report.MANIFEST).write_text(json.dumps([{"file": name, "rows": 1} for name in names]))
    (tmp_path / "notes.html").write_text("not a report: left alone")
    gone = report.prune(tmp_path, keep=4)
    assert gone == names[:2]  # the oldest two
    assert sorted(p.name for p in tmp_path.glob("data_report-*.html")) == sorted(names[2:])
    assert not any((tmp_path / report.quality_filename(name)).exists() for name in gone)
    assert [e["file"] for e in report.read_manifest(tmp_path)] == names[2:]
    assert (tmp_path / "notes.html").exists() and report.prune(tmp_path, keep=4) == []


def test_a_report_reads_at_most_the_windows_newest_report_max_rows(tmp_path: Path) -> None:
    from mlops.settings import Settings
    from mlops.stores.prediction_log import SQLiteStore, make_entry
    from reporting.create_report import read_window

    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    SQLiteStore(uri).write_many(
        [make_entry({"x": i}, 0.5, "run-a", "http", f"r-{i}", start + timedelta(seconds=i)) for i in range(300)]
    )
    settings = Settings(_env_file=None, state_dir=tmp_path, prediction_log_uri=uri, report_max_rows=100)
    entries = read_window.fn(settings, start, start + timedelta(hours=1))
    assert [e["request_id"] for e in entries] == [f"r-{i}" for i in range(200, 300)]  # the newest, oldest first
