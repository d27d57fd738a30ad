"""Drift reports as a person sees them: `make report` writes them, nginx serves them, headless Chromium renders them.

Drifted predictions go into a SQLite prediction log; `python -m reporting.create_report` (the Prefect flow, on the
session's Prefect server, reference from the trained run's `reference_uri` in moto's S3) writes the report and the
index; `python -m reporting.nginx_native` serves the folder with Debian's nginx on a free port; Debian's Chromium
opens the index, follows the link to the report and must find Evidently's drift table rendered by its JavaScript.
Outcomes settle 300 of the predictions: the report gains its classification-quality section (Evidently's
ClassificationPreset, embedded) and the index the realized ROC AUC, equal to sklearn's on the same rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.data import clean, generate_bank_churners
from mlops.spec import FeatureSpec
from mlops.stores.prediction_log import SQLiteStore, make_entry
from native.throwaway import free_port, start_process, stop_process, wait_for_http
from simulation_business.sampling import drift_frame, to_records
from tests.support.processes import system_binary

pytestmark = pytest.mark.integration

ROWS = 400


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        system_binary("chromium", "chromium", "chromium-browser", "google-chrome"),
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *extra, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rendered_text(dom: str) -> str:
    """The DOM without <script> bodies: Evidently embeds its data as JSON in a script, which must not count."""
    return re.sub(r"<script\b.*?</script>", "", dom, flags=re.DOTALL | re.IGNORECASE)


SETTLED = 300


def log_predictions(uri: str, spec: FeatureSpec, run_id: str, rows: int) -> list[tuple[float, int]]:
    """`rows` drifted predictions 30 minutes old; returns (probability, true label) per row, in order."""
    frame = clean(generate_bank_churners(rows + 50, seed=21), spec)
    records = to_records(drift_frame(frame, spec, strength=1.0, seed=2), spec)[:rows]
    labels = frame["label"].astype(int).tolist()[:rows]
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    chances = [float(0.6 * y + 0.4 * rng.uniform()) if i % 3 else float(rng.uniform()) for i, y in enumerate(labels)]
    entries = [
        make_entry(r, p, run_id, "http", f"req-{i}", now - timedelta(minutes=30, seconds=i))
        for i, (r, p) in enumerate(zip(records, chances, strict=True))
    ]
    store = SQLiteStore(uri)
    store.write_many(entries)
    assert store.count() == rows
    return list(zip(chances, labels, strict=True))


def settle(uri: str, truth: list[tuple[float, int]], count: int) -> None:
    """Outcomes for the first `count` predictions, by request id (what POST /outcomes stores)."""
    from mlops.outcomes import Outcome
    from mlops.stores.outcomes import SQLiteOutcomeStore

    now = datetime.now(UTC)
    report = SQLiteOutcomeStore(uri).ingest(
        [Outcome(f"req-{i}", None, y, now) for i, (_, y) in enumerate(truth[:count])]
    )
    assert report.settled == count


@pytest.fixture(scope="module")
def report_env(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("reports-state")
    return {
        **service_env,
        "STATE_DIR": str(state),
        "PREDICTION_LOG_URI": f"sqlite:///{state / 'predictions.sqlite'}",
        "REPORTS_PORT": str(free_port()),
        "DRIFT_MIN_ROWS": "300",
        "OUTCOME_MIN_LABELS": "200",
    }


def run_report(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reporting.create_report", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_too_little_data_writes_no_report_and_says_why(
    report_env: dict[str, str], trained_run_id: str, tmp_path: Path
) -> None:
    env = {**report_env, "STATE_DIR": str(tmp_path), "PREDICTION_LOG_URI": f"sqlite:///{tmp_path / 'few.sqlite'}"}
    log_predictions(env["PREDICTION_LOG_URI"], FeatureSpec.load("features.yaml"), trained_run_id, 20)
    done = run_report(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "only 20 predictions in the last 3 h" in done.stdout and "no report written" in done.stdout
    assert not list((tmp_path / "reports").glob("data_report-*.html"))


@pytest.fixture(scope="module")
def served_reports(report_env: dict[str, str], trained_run_id: str) -> Iterator[dict[str, Any]]:
    system_binary("nginx", "nginx")
    truth = log_predictions(report_env["PREDICTION_LOG_URI"], FeatureSpec.load("features.yaml"), trained_run_id, ROWS)
    settle(report_env["PREDICTION_LOG_URI"], truth, SETTLED)
    done = run_report(report_env, "--hours", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "report written:" in done.stdout
    state = Path(report_env["STATE_DIR"])
    log = state / "logs" / "nginx.log"
    process = start_process([sys.executable, "-m", "reporting.nginx_native"], log, env=report_env)
    url = f"http://127.0.0.1:{report_env['REPORTS_PORT']}"
    try:
        wait_for_http(f"{url}/", 30, process, log)
        yield {"url": url, "state": state, "run_id": trained_run_id, "truth": truth}
    finally:
        stop_process(process)


def test_summary_goes_into_the_prediction_store(served_reports: dict[str, Any], report_env: dict[str, str]) -> None:
    (summary,) = SQLiteStore(report_env["PREDICTION_LOG_URI"]).read_summaries()
    assert summary["rows"] == ROWS
    assert summary["model_run_ids"] == [served_reports["run_id"]]
    assert summary["drift_share"] > 0.3 and "credit_limit" in summary["drifted"]
    assert (served_reports["state"] / "reports" / summary["file"]).exists()


def test_browser_follows_the_index_to_a_rendered_drift_report(
    served_reports: dict[str, Any], tmp_path: Path, artifacts_dir: Path
) -> None:
    index = chromium(f"{served_reports['url']}/", tmp_path / "profile-index", "--dump-dom")
    assert index.returncode == 0, index.stderr[-2000:]
    assert "Data drift reports" in index.stdout
    links = re.findall(r'href="(data_report-\d{8}T\d{6}Z\.html)"', index.stdout)
    assert links, index.stdout[:2000]
    assert f">{ROWS}<" in index.stdout  # the row count column

    report_url = f"{served_reports['url']}/{links[0]}"
    page = chromium(report_url, tmp_path / "profile-report", "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    text = rendered_text(page.stdout)
    # Rendered by Evidently's JavaScript (not in the static HTML outside <script>): the drift table and its cells.
    assert "Drift is detected for" in text
    assert 'data-testid="mtablecell"' in text
    assert re.search(r">\s*Detected\s*<", text), "no drifted column in the rendered table"
    assert "Drift Score" in text and "credit_limit" in text

    screenshot = artifacts_dir / "drift-report.png"
    shot = chromium(report_url, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,2200")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.exists() and screenshot.stat().st_size > 30_000, "screenshot missing or blank"
    index_shot = artifacts_dir / "reports-index.png"
    chromium(
        f"{served_reports['url']}/", tmp_path / "profile-shot2", f"--screenshot={index_shot}", "--window-size=1200,500"
    )
    assert index_shot.exists()


def test_the_report_compares_live_drivers_of_risk_with_training(
    served_reports: dict[str, Any], report_env: dict[str, str], settings: Any, tmp_path: Path
) -> None:
    """The section's live figures are the served model's mean |contribution| over the logged inputs (all 400: the
    sample bound is larger), its training figures the ones the run logged, each feature flagged by the same rule."""
    from mlops.drivers import logged_importance
    from mlops.explain import mean_abs_contributions
    from mlops.model import ModelBundle
    from mlops.registry import download_model

    (summary,) = SQLiteStore(report_env["PREDICTION_LOG_URI"]).read_summaries()
    page = rendered_text(
        chromium(f"{served_reports['url']}/{summary['file']}", tmp_path / "profile", "--dump-dom").stdout
    )
    assert "Drivers of risk (live mean |contribution| vs training)" in page
    section = page.split('id="drivers-of-risk"', 1)[1].split("</section>", 1)[0]
    assert f"live over {ROWS} sampled predictions" in section
    inputs = [
        e["input"]
        for e in SQLiteStore(report_env["PREDICTION_LOG_URI"]).read(datetime(2000, 1, 1, tzinfo=UTC), None, None)
    ]
    bundle = ModelBundle.from_model_dir(download_model(settings, served_reports["run_id"]))
    live = mean_abs_contributions(bundle, bundle.encoder.encode_records(inputs))
    training = logged_importance(settings.mlflow_tracking_uri, served_reports["run_id"])
    assert training is not None
    shown = re.findall(
        r'<td>(\d+)</td><td>(\w+)</td><td class="num live">([\d.]+)</td><td class="num training">([\d.]+)</td>', section
    )
    assert [name for _, name, _, _ in shown] == list(live)  # every feature, by live importance
    for _, name, live_text, training_text in shown:
        assert float(live_text) == pytest.approx(live[name], abs=6e-5)
        assert float(training_text) == pytest.approx(training[name], abs=6e-5)
    assert summary["top_drivers"] == list(live)[:5]
    assert set(summary["shifted_drivers"]) == {
        f for f in live if training[f] and not (1 / 1.5 < live[f] / training[f] < 1.5)
    }


def test_the_report_has_a_classification_section_and_the_index_its_realized_auc(
    served_reports: dict[str, Any], tmp_path: Path, artifacts_dir: Path
) -> None:
    from sklearn.metrics import roc_auc_score

    chances, labels = zip(*served_reports["truth"][:SETTLED], strict=True)
    expected = roc_auc_score(labels, chances)
    index = chromium(f"{served_reports['url']}/", tmp_path / "profile-index", "--dump-dom")
    assert f"{expected:.3f} ({SETTLED} outcomes)" in index.stdout
    (link,) = re.findall(r'href="(data_report-\d{8}T\d{6}Z\.html)"', index.stdout)
    report_url = f"{served_reports['url']}/{link}"
    page = rendered_text(chromium(report_url, tmp_path / "profile-report", "--dump-dom").stdout)
    assert "Classification quality (settled outcomes of this window)" in page
    assert f"<td>{SETTLED}</td>" in page and f"<td>{expected:.4f}</td>" in page
    quality = re.search(r'src="(quality_report-\d{8}T\d{6}Z\.html)"', page)
    assert quality, page[:2000]
    rendered = rendered_text(
        chromium(f"{served_reports['url']}/{quality.group(1)}", tmp_path / "profile-quality", "--dump-dom").stdout
    )
    # Evidently's classification widgets, drawn by its JavaScript
    assert "Accuracy" in rendered and "ROC AUC" in rendered, rendered[:3000]
    screenshot = artifacts_dir / "report-classification-quality.png"
    shot = chromium(report_url, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,1600")
    assert shot.returncode == 0 and screenshot.stat().st_size > 30_000
