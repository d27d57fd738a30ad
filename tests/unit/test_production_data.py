"""A snapshot from production (mlops.production_data): settled predictions become training rows, one per customer,
replacing that customer's row of the current snapshot; S3 is moto in process, the log SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops import aws
from mlops.data import clean, generate_bank_churners
from mlops.feature_store import FeatureStore
from mlops.init_aws import load_data
from mlops.outcomes import Outcome
from mlops.production_data import snapshot_from_production
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from mlops.stores.outcomes import SQLiteOutcomeStore
from mlops.stores.prediction_log import SQLiteStore, make_entry
from tests.support.mock_s3 import mocked_s3_settings


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with mocked_s3_settings(tmp_path, "production-test") as s:
        yield s


def test_settled_production_rows_become_a_snapshot_once(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    spec = FeatureSpec.load(settings.feature_spec)
    base = load_data(settings, spec, None, rows=300, seed=3)
    store = FeatureStore(aws.client("s3", settings), settings)
    base_frame = store.get_frame(base, "train.parquet")
    # 60 settled live predictions: 20 of customers already in the snapshot, 40 new ones; a shadow score is ignored
    live = clean(generate_bank_churners(60, seed=11), spec)
    live.loc[:19, spec.id_column] = base_frame[spec.id_column].iloc[:20].to_numpy()
    now = datetime.now(UTC)
    entries = [
        make_entry(
            {c: row[c] for c in spec.feature_columns},
            0.5,
            "run-a",
            "http",
            f"r-{i}",
            now - timedelta(minutes=60 - i),
            customer_id=str(row[spec.id_column]),
        )
        for i, row in live.iterrows()
    ]
    entries.append(
        make_entry(entries[0]["input"], 0.9, "run-b", "shadow", "r-0", now, customer_id=entries[0]["customer_id"])
    )
    uri = settings.prediction_log_location
    SQLiteStore(uri).write_many(entries)
    labels = {e["request_id"]: 1 - int(live.loc[i, "label"]) for i, e in enumerate(entries[:60])}  # flipped: visible
    report = SQLiteOutcomeStore(uri).ingest([Outcome(r, None, y, now) for r, y in labels.items()])
    assert report.settled == 60

    kept = snapshot_from_production(settings, spec, min_rows=100)
    assert not kept.new and kept.snapshot.data_hash == base.data_hash
    assert "60 settled production rows < RETRAIN_MIN_PRODUCTION_ROWS 100" in kept.note

    built = snapshot_from_production(settings, spec, min_rows=50)
    assert built.new and built.production_rows == 60 and store.latest(spec.name).data_hash == built.snapshot.data_hash
    frame = store.get_frame(built.snapshot, "train.parquet")
    assert len(frame) == 300 - 20 + 60 and frame[spec.id_column].is_unique
    assert list(frame.columns) == list(base_frame.columns) and (frame.dtypes == base_frame.dtypes).all()
    replaced = frame.set_index(spec.id_column).loc[str(live.loc[0, spec.id_column])]
    assert replaced["label"] == labels["r-0"]  # the outcome observed in production, not the snapshot's label
    assert "new snapshot" in capsys.readouterr().out

    again = snapshot_from_production(settings, spec, min_rows=50)  # the same rows: the same snapshot, not a new one
    assert not again.new and again.snapshot.data_hash == built.snapshot.data_hash
    assert "already in snapshot" in again.note


def test_init_aws_keeps_a_latest_snapshot_it_did_not_make(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`make up` runs init_aws every time: after a restore, or once LATEST names a snapshot built from production,
    it must not point training back at the generated data; DATA=<file> still loads new data."""
    from mlops import init_aws

    spec = FeatureSpec.load(settings.feature_spec)
    monkeypatch.setattr(init_aws, "load_settings", lambda env=None: settings)
    production = load_data(settings, spec, None, rows=200, seed=5)  # stands for a snapshot from production
    assert init_aws.main(["--rows", "300", "--skip-online"]) == 0
    assert "is LATEST: kept" in capsys.readouterr().out
    store = FeatureStore(aws.client("s3", settings), settings)
    assert store.latest(spec.name) == production
    raw = settings.state_dir / "new.csv"
    generate_bank_churners(150, seed=9).to_csv(raw, index=False)
    assert init_aws.main(["--data", str(raw), "--skip-online"]) == 0
    assert store.latest(spec.name) != production
