"""Take, list, prune and restore backups (the package docstring says what a backup holds and why)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import aws
from mlops.backup.services import SERVICES, dump_services, restore_services
from mlops.settings import Settings

MANIFEST = "manifest.json"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
# rebuilt, re-downloaded or live process plumbing: never in a backup
PENDING = "restore-pending"  # a restore's bucket objects, until moto runs again (`make up` puts them back)
SKIPPED_FOLDERS = {
    "logs",
    "model-cache",
    "prometheus",
    "prometheus-multiproc",
    "nginx",
    "api-gateway",
    "prefect-client",
    PENDING,
}
SQLITE_HEADER = b"SQLite format 3\x00"
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".sock", ".pid", ".lock", ".tmp")
SECRETS = "secrets.env"
# what a restore compares: rows per table of the databases it knows
COUNTED = {
    "predictions.sqlite": ("predictions", "outcomes", "settlements"),
    "online.sqlite": ("online_features",),
    "mlflow/mlflow.db": ("registered_models", "model_versions", "registered_model_aliases", "runs"),
}
Say = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore refused or failed; the message says why and what to do."""


def default_location(settings: Settings) -> str:
    """BACKUP_LOCATION, else a folder beside STATE_DIR (never inside it: a backup would hold the backups)."""
    return settings.backup_location or str(settings.state_dir.parent / f"{settings.state_dir.name}-backups")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def state_files(state_dir: Path) -> list[Path]:
    """Every file of STATE_DIR a backup holds, relative to it."""
    found = []
    for path in sorted(state_dir.rglob("*")):
        relative = path.relative_to(state_dir)
        if not path.is_file() or relative.parts[0] in SKIPPED_FOLDERS or relative.parts[0].startswith("."):
            continue
        if path.name.endswith(SKIPPED_SUFFIXES) or relative.parts[0].startswith("before-restore-"):
            continue
        found.append(relative)
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a database other processes are writing (SQLite's online backup API)."""
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
    finally:
        writer.close()
        reader.close()


def _counts(folder: Path) -> dict[str, int]:
    counts = {}
    for name, tables in COUNTED.items():
        path = folder / name
        if not path.exists():
            continue
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for table in tables:
                try:
                    counts[table] = int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                except sqlite3.OperationalError:  # a table this state never had
                    continue
        finally:
            connection.close()
    return counts


def _dump_services(settings: Settings, partial: Path) -> dict[str, Any]:
    try:
        return dump_services(settings, partial)
    except Exception as error:  # pymongo's or redis' errors: refused rather than taken without that state
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupError(
            f"cannot read the servers' state (PREDICTION_LOG_URI / ONLINE_STORE_URI): {type(error).__name__}: {error}"
        ) from error


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def create_backup(settings: Settings, destination: str, say: Say = print) -> dict[str, Any]:
    """A backup of STATE_DIR and the feature store bucket into `destination`/<stamp>/; returns its manifest."""
    state = settings.state_dir
    if not state.is_dir():
        raise BackupError(f"STATE_DIR={state} does not exist: nothing to back up")
    stamp = _stamp()
    remote = destination.startswith("s3://")
    root = Path(tempfile.mkdtemp(prefix="backup-")) if remote else Path(destination).expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = root / f".{stamp}.partial"  # a half-written backup never looks like one
    files = []
    for relative in state_files(state):
        target = partial / "state" / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        kind = "sqlite" if relative.suffix in SQLITE_SUFFIXES and _is_sqlite(state / relative) else "file"
        if kind == "sqlite":
            _copy_sqlite(state / relative, target)
        else:
            shutil.copy2(state / relative, target)
        files.append({"path": str(relative), "kind": kind, "bytes": target.stat().st_size, "sha256": _sha256(target)})
    say(f"backup: {len(files)} files of {state} ({sum(f['bytes'] for f in files) / 1e6:.1f} MB)")
    services = _dump_services(settings, partial)
    if services:
        say(f"backup: {json.dumps(services)} from the servers (MongoDB, Redis)")
    s3 = aws.client("s3", settings)
    objects = []
    try:
        for item in aws.list_objects(s3, settings.s3_bucket):
            target = partial / "s3" / settings.s3_bucket / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=settings.s3_bucket, Key=item["Key"])["Body"].read())
            objects.append({"bucket": settings.s3_bucket, "key": item["Key"], "bytes": item["Size"]})
    except Exception as error:  # botocore's errors: the backup is refused rather than taken without the store
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupError(
            f"cannot read s3://{settings.s3_bucket} (S3_BUCKET, {aws.describe_endpoint(settings)}): {error}"
        ) from error
    say(f"backup: {len(objects)} objects of s3://{settings.s3_bucket}")
    manifest = {"stamp": stamp, "created": datetime.now(UTC).isoformat(), "state_dir": str(state), "files": files}
    manifest |= {"s3": objects, "counts": _counts(partial / "state"), "services": services}
    manifest["service_files"] = {
        str(p.relative_to(partial)): _sha256(p) for p in sorted((partial / SERVICES).rglob("*")) if p.is_file()
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    final = root / stamp
    partial.rename(final)
    if remote:
        bucket, prefix = _split_s3(destination)
        for path in sorted(final.rglob("*"), key=lambda p: p.name == MANIFEST):  # the manifest last: complete
            if path.is_file():
                key = "/".join(filter(None, [prefix, stamp, str(path.relative_to(final))]))
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        shutil.rmtree(root, ignore_errors=True)
    manifest["location"] = f"{destination.rstrip('/')}/{stamp}"
    return manifest


def list_backups(settings: Settings, destination: str) -> list[str]:
    """The complete backups (those with a manifest) of `destination`, oldest first."""
    if destination.startswith("s3://"):
        bucket, prefix = _split_s3(destination)
        keys = [o["Key"] for o in aws.list_objects(aws.client("s3", settings), bucket, f"{prefix}/" if prefix else "")]
        return sorted({k.split("/")[-2] for k in keys if k.endswith(f"/{MANIFEST}")})
    root = Path(destination).expanduser()
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def prune_backups(settings: Settings, destination: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups of `destination`; returns the stamps removed."""
    gone = list_backups(settings, destination)[:-keep] if keep > 0 else []
    for stamp in gone:
        if destination.startswith("s3://"):
            bucket, prefix = _split_s3(destination)
            s3 = aws.client("s3", settings)
            for item in aws.list_objects(s3, bucket, "/".join(filter(None, [prefix, stamp])) + "/"):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        else:
            shutil.rmtree(Path(destination).expanduser() / stamp)
    return gone


def running_programs(state_dir: Path) -> list[str]:
    """The native runtime's programs running on this STATE_DIR, but moto (asked of supervisord over its socket):
    restoring databases under running programs would corrupt them; moto must run to take the bucket back."""
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    path = state_dir / "supervisor.sock"
    if not path.exists():
        return []
    transport = SupervisorTransport(None, None, f"unix://{path}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        processes = proxy.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return []  # a socket left by a dead supervisord
    return sorted(p["name"] for p in processes if p["statename"] in ("RUNNING", "STARTING") and p["name"] != "moto")


def _fetch(settings: Settings, source: str, scratch: Path) -> Path:
    if not source.startswith("s3://"):
        return Path(source).expanduser()
    bucket, prefix = _split_s3(source)
    s3 = aws.client("s3", settings)
    for item in aws.list_objects(s3, bucket, f"{prefix}/"):
        target = scratch / item["Key"].removeprefix(f"{prefix}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return scratch


def restore_backup(settings: Settings, source: str, force: bool = False, say: Say = print) -> dict[str, Any]:
    """Put a backup's state back into STATE_DIR and its objects into the feature store bucket."""
    state = settings.state_dir
    running = running_programs(state)
    if running:
        raise BackupError(f"{', '.join(running)} running on {state}: stop the platform first (make down), then restore")
    with tempfile.TemporaryDirectory(prefix="restore-") as scratch:
        folder = _fetch(settings, source, Path(scratch))
        if not (folder / MANIFEST).is_file():
            raise BackupError(f"{source} is not a backup: no {MANIFEST} (list them: python -m mlops.backup list)")
        manifest = json.loads((folder / MANIFEST).read_text())
        for entry in manifest["files"]:
            if _sha256(folder / "state" / entry["path"]) != entry["sha256"]:
                raise BackupError(f"{source}: {entry['path']} does not match its checksum: the backup is damaged")
        for path, digest in manifest.get("service_files", {}).items():
            if _sha256(folder / path) != digest:
                raise BackupError(f"{source}: {path} does not match its checksum: the backup is damaged")
        present = [e["path"] for e in manifest["files"] if e["path"] != SECRETS and (state / e["path"]).exists()]
        if present and not force:
            raise BackupError(
                f"STATE_DIR={state} already holds {', '.join(present[:5])}{' ...' if len(present) > 5 else ''}: "
                "restore into an empty state (make reset_all) or pass --force (FORCE=1) to move them aside first"
            )
        aside = state / f"before-restore-{_stamp()}"
        for path in [*present, SECRETS] if (state / SECRETS).exists() else present:
            (aside / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(state / path, aside / path)
        for entry in manifest["files"]:
            target = state / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / "state" / entry["path"], target)
        if (state / SECRETS).exists():
            os.chmod(state / SECRETS, 0o600)
        pending = state / PENDING
        shutil.rmtree(pending, ignore_errors=True)
        if (folder / "s3").is_dir():
            shutil.copytree(folder / "s3", pending / "s3")
        if (folder / SERVICES).is_dir():
            shutil.copytree(folder / SERVICES, pending / SERVICES)
        (pending / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (pending / MANIFEST).write_text(json.dumps({"stamp": manifest["stamp"], "s3": manifest["s3"]}))
    say(f"restore: {len(manifest['files'])} files into {state}")
    pushed = finish_restore(settings, say=say, quiet=True)
    if pushed is None:
        say(
            f"restore: the {len(manifest['s3'])} objects of s3://{settings.s3_bucket} and the servers' dumps wait in "
            f"{state / PENDING} (S3, MongoDB or Redis is not up): `make up` puts them back before anything reads them"
        )
    return manifest


def finish_restore(settings: Settings, say: Say = print, quiet: bool = False) -> int | None:
    """Put a restore's staged bucket objects back (`make up` runs this once moto is up, before `init_aws`).
    Returns how many, 0 when nothing is staged, None when the S3 endpoint does not answer (they stay staged)."""
    from botocore.exceptions import BotoCoreError, ClientError

    pending = settings.state_dir / PENDING
    if not (pending / MANIFEST).is_file():
        return 0
    staged = json.loads((pending / MANIFEST).read_text())
    s3 = aws.client("s3", settings)
    try:
        aws.ensure_bucket(s3, settings.s3_bucket, settings.aws_region)
        for item in staged["s3"]:
            body = (pending / "s3" / item["bucket"] / item["key"]).read_bytes()
            s3.put_object(Bucket=settings.s3_bucket, Key=item["key"], Body=body)
    except (BotoCoreError, ClientError) as error:
        if not quiet:
            raise BackupError(
                f"the restored objects could not go back into s3://{settings.s3_bucket} "
                f"({aws.describe_endpoint(settings)}): {error}; they stay in {pending}"
            ) from error
        return None
    (pending / MANIFEST).write_text(json.dumps({**staged, "s3": []}))  # pushed: a retry does not push them again
    shutil.rmtree(pending / "s3", ignore_errors=True)
    say(f"restore: {len(staged['s3'])} objects of backup {staged['stamp']} back in s3://{settings.s3_bucket}")
    if (pending / SERVICES).is_dir():
        try:
            restored = restore_services(settings, pending)
        except Exception as error:  # pymongo's or redis' errors: the dumps stay staged
            if not quiet:
                raise BackupError(
                    f"the restored MongoDB/Redis dumps could not go back (PREDICTION_LOG_URI, ONLINE_STORE_URI): "
                    f"{type(error).__name__}: {error}; they stay in {pending}"
                ) from error
            return None
        say(f"restore: {json.dumps(restored)} back in MongoDB/Redis")
    shutil.rmtree(pending)
    return len(staged["s3"])
