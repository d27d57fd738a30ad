"""Drift reports as a person sees them: `make report` writes them, nginx serves them, headless Chromium renders them.

Drifted predictions go into a SQLite prediction log; `python -m reporting.create_report` (the Prefect flow, on the
session's Prefect server, reference from the trained run's `reference_uri` in moto's S3) writes the report and the
index; `python -m reporting.nginx_native` serves the folder with Debian's nginx on a free port; Debian's Chromium
opens the index, follows the link to the report and must find Evidently's drift table rendered by its JavaScript.
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
from mlops.prediction_log import SQLiteStore, make_entry
from mlops.spec import FeatureSpec
from simulation_business.sampling import drift_frame, to_records
from tests.conftest import free_port, start_process, stop_process, system_binary, wait_for_http

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


def log_predictions(uri: str, spec: FeatureSpec, run_id: str, rows: int) -> None:
    frame = clean(generate_bank_churners(rows + 50, seed=21), spec, require_target=False)
    records = to_records(drift_frame(frame, spec, strength=1.0, seed=2), spec)[:rows]
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    entries = [
        make_entry(r, float(rng.uniform()), run_id, "http", f"req-{i}", now - timedelta(minutes=30, seconds=i))
        for i, r in enumerate(records)
    ]
    store = SQLiteStore(uri)
    store.write_many(entries)
    assert store.count() == rows


@pytest.fixture(scope="module")
def report_env(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("reports-state")
    return {
        **service_env,
        "STATE_DIR": str(state),
        "PREDICTION_LOG_URI": f"sqlite:///{state / 'predictions.sqlite'}",
        "REPORTS_PORT": str(free_port()),
        "DRIFT_MIN_ROWS": "300",
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
    log_predictions(report_env["PREDICTION_LOG_URI"], FeatureSpec.load("features.yaml"), trained_run_id, ROWS)
    done = run_report(report_env, "--hours", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "report written:" in done.stdout
    state = Path(report_env["STATE_DIR"])
    log = state / "logs" / "nginx.log"
    process = start_process([sys.executable, "-m", "reporting.nginx_native"], log, env=report_env)
    url = f"http://127.0.0.1:{report_env['REPORTS_PORT']}"
    try:
        wait_for_http(f"{url}/", 30, process, log)
        yield {"url": url, "state": state, "run_id": trained_run_id}
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
