"""Retention on real servers: the archive CLI (`make archive`) and the Prefect flow against the moto server's S3 and
a SQLite prediction log holding three months of traffic with customer ids."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops.archive import read_archive
from mlops.outcomes import Outcome
from mlops.settings import Settings
from mlops.stores.outcomes import SQLiteOutcomeStore
from mlops.stores.prediction_log import SQLiteStore, make_entry
from native.throwaway import VENV_BIN

pytestmark = pytest.mark.integration

DAYS_KEPT = 30


def _archive_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "mlops.archive", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_retention_archives_exactly_the_rows_past_the_horizon_and_outcomes_say_so(
    settings: Settings, service_env: dict[str, str], feature_snapshot: Any, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    uri = f"sqlite:///{tmp_path / 'predictions.sqlite'}"
    predictions, outcomes = SQLiteStore(uri), SQLiteOutcomeStore(uri)
    # 90 days, 60 predictions a day, two model runs, customer ids; a third of the old ones settled before archiving
    entries = [
        make_entry(
            {"customer_age": 40 + i % 20, "card_category": "Blue"},
            (i % 100) / 100,
            f"run-{day // 45}",
            "http" if i % 2 else "kinesis",
            f"req-{day}-{i}",
            now - timedelta(days=day, minutes=i + 30),  # none within minutes of the horizon
            customer_id=f"{700_000_000 + day * 100 + i}",
        )
        for day in range(90)
        for i in range(60)
    ]
    predictions.write_many(entries)
    old = [e for e in entries if datetime.fromisoformat(e["timestamp"]) < now - timedelta(days=DAYS_KEPT)]
    settled = outcomes.ingest(
        [Outcome(e["request_id"], None, i % 2, datetime.fromisoformat(e["timestamp"])) for i, e in enumerate(old[::3])]
    )
    assert settled.settled == len(old[::3])
    env = {**service_env, "PREDICTION_LOG_URI": uri, "PREDICTION_RETENTION_DAYS": str(DAYS_KEPT)}
    env["ARCHIVE_CHUNK_ROWS"] = "1000"
    env["ARCHIVE_PREFIX"] = f"archive-test-{tmp_path.name}"

    dry = _archive_cli(env, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout.splitlines()[-1])["archived"]["predictions"] == len(old)
    assert predictions.count() == len(entries)  # a dry run deletes nothing

    ran = _archive_cli(env, "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = json.loads(ran.stdout.splitlines()[-1])
    assert summary["archived"] == summary["deleted"]
    assert summary["archived"]["predictions"] == len(old) and summary["archived"]["settlements"] == len(old[::3])
    assert "predictions: 1000 rows so far" in ran.stdout  # progress, chunk by chunk
    assert predictions.count() == len(entries) - len(old)

    # the archive, read back with pandas from the moto server's S3: every old prediction once, nothing recent
    archived_settings = settings.model_copy(update={"archive_prefix": env["ARCHIVE_PREFIX"]})
    frame = read_archive(archived_settings, "predictions")
    assert len(frame) == frame["prediction_id"].nunique() == len(old)
    assert set(frame["prediction_id"]) == {e["prediction_id"] for e in old}
    assert set(frame["model_run_id"]) == {"run-0", "run-1"}
    assert 90 - DAYS_KEPT <= frame["date"].nunique() <= 90 - DAYS_KEPT + 1  # a day of traffic may span midnight
    first = frame.set_index("prediction_id").loc[old[0]["prediction_id"]]
    assert json.loads(first["input"]) == old[0]["input"] and first["customer_id"] == old[0]["customer_id"]
    assert len(read_archive(archived_settings, "settlements")) == len(old[::3])

    # an outcome by customer for an archived prediction: reported archived, with the horizon, never plain unknown
    customer = old[1]
    late = outcomes.ingest([Outcome(None, customer["customer_id"], 1, datetime.fromisoformat(customer["timestamp"]))])
    assert (late.archived, late.unknown, late.settled) == (1, 0, 0)
    assert late.archived_before == summary["horizon"]
    # one for a prediction still in the log settles as before
    recent = next(e for e in entries if e not in old)
    kept = outcomes.ingest([Outcome(None, recent["customer_id"], 0, now)])
    assert kept.settled == 1

    # the scheduled flow, on the real Prefect server: the same work, nothing left to do, and it says so
    from prefect.settings import temporary_settings

    from mlops.prefect_api import client_settings
    from model_orchestration.archive_flow import archive_prediction_log

    overrides = settings.flow_overrides()
    os.environ.update({k: env[k] for k in ("PREDICTION_LOG_URI", "PREDICTION_RETENTION_DAYS", "ARCHIVE_PREFIX")})
    try:
        with temporary_settings(client_settings(settings)):
            again = archive_prediction_log(env="local", settings_overrides=overrides)
    finally:
        for name in ("PREDICTION_LOG_URI", "PREDICTION_RETENTION_DAYS", "ARCHIVE_PREFIX"):
            os.environ.pop(name, None)
    assert sum(again["archived"].values()) == 0 and again["horizon"] >= summary["horizon"]
    assert predictions.count() == len(entries) - len(old)
