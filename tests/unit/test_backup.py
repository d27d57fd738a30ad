"""Backups (mlops.backup): a consistent copy of STATE_DIR's databases and files and of the feature store bucket,
listed, pruned and restored; S3 is moto in process."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from mlops import aws
from mlops.backup import BackupError, create_backup, finish_restore, list_backups, prune_backups, restore_backup
from mlops.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with mock_aws():
        settings = Settings(
            _env_file=None,
            state_dir=tmp_path / "state",
            aws_endpoint_url=None,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            s3_bucket="backup-test",
        )
        yield settings


def _platform_state(settings: Settings) -> sqlite3.Connection:
    """A prediction log with rows, one more written after the backup starts reading (WAL kept open), MLflow's
    artifacts, secrets, logs and a model cache (left out), and the feature store bucket."""
    state = settings.state_dir
    (state / "mlflow" / "artifacts" / "1" / "run").mkdir(parents=True)
    (state / "mlflow" / "artifacts" / "1" / "run" / "model.json").write_text('{"trees": 3}')
    (state / "secrets.env").write_text("MLFLOW_ADMIN_PASSWORD ?= abc\n")
    (state / "logs").mkdir()
    (state / "logs" / "api.log").write_text("noise")
    (state / "model-cache" / "r1").mkdir(parents=True)
    (state / "model-cache" / "r1" / "big").write_bytes(b"x" * 1000)
    (state / "prometheus-multiproc" / "api").mkdir(parents=True)
    (state / "prometheus-multiproc" / "api" / "counter_1.db").write_bytes(b"\x08\x03mmap")  # process plumbing
    (state / "notes.db").write_bytes(b"not a database")  # a .db that is not SQLite: copied as a file
    writer = sqlite3.connect(state / "predictions.sqlite")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE predictions (prediction_id TEXT PRIMARY KEY, input TEXT)")
    writer.executemany("INSERT INTO predictions VALUES (?, ?)", [(f"p{i}", "{}") for i in range(500)])
    writer.commit()  # in the WAL, not yet checkpointed into the file: the backup API still sees it
    s3 = aws.client("s3", settings)
    s3.create_bucket(Bucket="backup-test")
    s3.put_object(Bucket="backup-test", Key="bank_churners/LATEST", Body=b"abc123")
    s3.put_object(Bucket="backup-test", Key="archive/predictions/date=2026-01-01/part-1.parquet", Body=b"PAR1")
    return writer


def test_backup_then_restore_into_an_empty_state_gives_the_same_state(settings: Settings, tmp_path: Path) -> None:
    writer = _platform_state(settings)
    lines: list[str] = []
    manifest = create_backup(settings, str(tmp_path / "backups"), say=lines.append)
    writer.close()
    assert manifest["counts"]["predictions"] == 500
    paths = {f["path"] for f in manifest["files"]}
    assert {"predictions.sqlite", "secrets.env", "mlflow/artifacts/1/run/model.json"} <= paths
    assert not any(p.startswith(("logs/", "model-cache/", "prometheus-")) or p.endswith("-wal") for p in paths), paths
    assert {f["path"]: f["kind"] for f in manifest["files"]}["notes.db"] == "file"
    assert list_backups(settings, str(tmp_path / "backups")) == [manifest["stamp"]]
    assert oct((tmp_path / "backups").stat().st_mode & 0o777) == "0o700"

    # disaster: the state and the bucket's objects are gone
    import shutil

    shutil.rmtree(settings.state_dir)
    s3 = aws.client("s3", settings)
    for key in ("bank_churners/LATEST", "archive/predictions/date=2026-01-01/part-1.parquet"):
        s3.delete_object(Bucket="backup-test", Key=key)
    restore_backup(settings, manifest["location"], say=lines.append)
    with sqlite3.connect(settings.state_dir / "predictions.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 500
    assert (settings.state_dir / "mlflow/artifacts/1/run/model.json").read_text() == '{"trees": 3}'
    assert oct((settings.state_dir / "secrets.env").stat().st_mode & 0o777) == "0o600"
    assert s3.get_object(Bucket="backup-test", Key="bank_churners/LATEST")["Body"].read() == b"abc123"

    # restoring over existing state is refused unless forced, and forced moves the current state aside
    with pytest.raises(BackupError, match=r"already holds .*predictions\.sqlite"):
        restore_backup(settings, manifest["location"], say=lines.append)
    restore_backup(settings, manifest["location"], force=True, say=lines.append)
    aside = list(settings.state_dir.glob("before-restore-*"))
    assert len(aside) == 1 and (aside[0] / "predictions.sqlite").exists()


def test_a_damaged_backup_is_refused_before_anything_is_touched(settings: Settings, tmp_path: Path) -> None:
    _platform_state(settings).close()
    manifest = create_backup(settings, str(tmp_path / "backups"), say=lambda _: None)
    (Path(manifest["location"]) / "state" / "secrets.env").write_text("tampered")
    with pytest.raises(BackupError, match=r"secrets\.env does not match its checksum"):
        restore_backup(settings, manifest["location"], force=True, say=lambda _: None)
    assert (settings.state_dir / "secrets.env").read_text() == "MLFLOW_ADMIN_PASSWORD ?= abc\n"
    with pytest.raises(BackupError, match="not a backup"):
        restore_backup(settings, str(tmp_path), say=lambda _: None)


def test_backups_to_s3_are_listed_pruned_and_restored(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    _platform_state(settings).close()
    aws.client("s3", settings).create_bucket(Bucket="vault")
    stamps = []
    for second in range(3):  # three backups, one second apart (stamps are to the second)
        monkeypatch.setattr("mlops.backup.store._stamp", lambda s=second: f"20260101T00000{s}Z")
        stamps.append(create_backup(settings, "s3://vault/platform", say=lambda _: None)["stamp"])
    assert list_backups(settings, "s3://vault/platform") == stamps
    assert prune_backups(settings, "s3://vault/platform", keep=2) == stamps[:1]
    assert list_backups(settings, "s3://vault/platform") == stamps[1:]
    manifest = json.loads(
        aws.client("s3", settings).get_object(Bucket="vault", Key=f"platform/{stamps[-1]}/manifest.json")["Body"].read()
    )
    import shutil

    shutil.rmtree(settings.state_dir)
    restored = restore_backup(settings, f"s3://vault/platform/{stamps[-1]}", say=lambda _: None)
    assert restored["counts"] == manifest["counts"] and (settings.state_dir / "predictions.sqlite").exists()


def test_objects_wait_for_the_bucket_when_moto_is_down_and_make_up_puts_them_back(
    settings: Settings, tmp_path: Path
) -> None:
    import shutil

    _platform_state(settings).close()
    manifest = create_backup(settings, str(tmp_path / "backups"), say=lambda _: None)
    shutil.rmtree(settings.state_dir)
    aws.client("s3", settings).delete_object(Bucket="backup-test", Key="bank_churners/LATEST")
    down = Settings(_env_file=None, **{**settings.model_dump(), "aws_endpoint_url": "http://127.0.0.1:9"})
    lines: list[str] = []
    restore_backup(down, manifest["location"], say=lines.append)  # natively: the platform (moto too) is down
    assert any("waits in" in line and "make up" in line for line in lines), lines
    assert (settings.state_dir / "restore-pending" / "manifest.json").exists()
    assert finish_restore(settings, say=lines.append) == 2  # what `make up` runs once moto is up
    body = aws.client("s3", settings).get_object(Bucket="backup-test", Key="bank_churners/LATEST")["Body"].read()
    assert body == b"abc123" and not (settings.state_dir / "restore-pending").exists()
    assert finish_restore(settings, say=lines.append) == 0  # nothing staged: nothing to do


def test_volumes_and_extra_buckets_are_trees_of_their_own_and_come_back_where_they_were(
    settings: Settings, tmp_path: Path
) -> None:
    """Compose: each service's volume mounted under BACKUP_VOLUMES_DIR, MLflow's artifacts in a bucket of their own."""
    import shutil

    _platform_state(settings).close()
    volumes = tmp_path / "volumes"
    (volumes / "mlflow-db" / "state").mkdir(parents=True)
    with sqlite3.connect(volumes / "mlflow-db" / "mlflow.db") as db:
        db.execute("CREATE TABLE registered_models (name TEXT)")
        db.execute("INSERT INTO registered_models VALUES ('churn-model')")
    (volumes / "mlflow-db" / "state" / "users.txt").write_text("writer")
    (volumes / "prefect-data").mkdir()
    (volumes / "prefect-data" / "prefect.db").write_bytes(b"")
    s3 = aws.client("s3", settings)
    s3.create_bucket(Bucket="mlflow-artifacts")
    s3.put_object(Bucket="mlflow-artifacts", Key="1/abc/artifacts/model/model.ubj", Body=b"booster")
    compose = Settings(
        _env_file=None,
        **{**settings.model_dump(), "backup_volumes_dir": volumes, "backup_buckets": "s3://mlflow-artifacts/, gone"},
    )
    lines: list[str] = []
    manifest = create_backup(compose, str(tmp_path / "backups"), say=lines.append)
    assert manifest["trees"] == ["state", "volumes/mlflow-db", "volumes/prefect-data"]
    assert manifest["counts"]["registered_models"] == 1 and manifest["counts"]["predictions"] == 500
    assert {o["bucket"] for o in manifest["s3"]} == {"backup-test", "mlflow-artifacts"}
    assert any("s3://gone (BACKUP_BUCKETS) does not exist" in line for line in lines), lines

    # the volumes come back empty (compose `make reset_all`), the artifact bucket is gone with moto's memory
    shutil.rmtree(settings.state_dir)
    for volume in volumes.iterdir():
        shutil.rmtree(volume)
        volume.mkdir()
    s3.delete_object(Bucket="mlflow-artifacts", Key="1/abc/artifacts/model/model.ubj")
    s3.delete_bucket(Bucket="mlflow-artifacts")
    restore_backup(compose, manifest["location"], say=lines.append)
    with sqlite3.connect(volumes / "mlflow-db" / "mlflow.db") as db:
        assert db.execute("SELECT name FROM registered_models").fetchall() == [("churn-model",)]
    assert (volumes / "mlflow-db" / "state" / "users.txt").read_text() == "writer"
    assert (settings.state_dir / "predictions.sqlite").exists()
    body = s3.get_object(Bucket="mlflow-artifacts", Key="1/abc/artifacts/model/model.ubj")["Body"].read()
    assert body == b"booster"

    # a volume's existing files are refused by name, and forced aside inside that volume
    with pytest.raises(BackupError, match=r"volumes/mlflow-db/mlflow\.db"):
        restore_backup(compose, manifest["location"], say=lines.append)
    restore_backup(compose, manifest["location"], force=True, say=lines.append)
    assert len(list((volumes / "mlflow-db").glob("before-restore-*/mlflow.db"))) == 1

    # a backup with volumes cannot be restored where they are not mounted: refused before anything moves
    shutil.rmtree(volumes / "prefect-data")
    with pytest.raises(BackupError, match="'prefect-data'"):
        restore_backup(compose, manifest["location"], force=True, say=lines.append)
