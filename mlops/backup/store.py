"""Take, list, prune and restore backups (the package docstring says what a backup holds and why)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import aws
from mlops.backup.services import SERVICES, dump_services, restore_services
from mlops.backup.trees import (
    PENDING,
    SECRETS,
    BackupError,
    bucket_names,
    copy_tree,
    counts,
    entry_tree,
    sha256,
    source_trees,
    target_folder,
)
from mlops.settings import Settings

MANIFEST = "manifest.json"
Say = Callable[[str], None]


def default_location(settings: Settings) -> str:
    """BACKUP_LOCATION, else a folder beside STATE_DIR (never inside it: a backup would hold the backups)."""
    return settings.backup_location or str(settings.state_dir.parent / f"{settings.state_dir.name}-backups")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


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
    """A backup of every tree (STATE_DIR, the volumes) and bucket into `destination`/<stamp>/; returns its manifest."""
    state = settings.state_dir
    if not state.is_dir():
        raise BackupError(f"STATE_DIR={state} does not exist: nothing to back up")
    trees = source_trees(settings)
    stamp = _stamp()
    remote = destination.startswith("s3://")
    root = Path(tempfile.mkdtemp(prefix="backup-")) if remote else Path(destination).expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = root / f".{stamp}.partial"  # a half-written backup never looks like one
    files = []
    for tree, folder in trees.items():
        copied = copy_tree(tree, folder, partial)
        say(f"backup: {len(copied)} files of {folder} ({sum(f['bytes'] for f in copied) / 1e6:.1f} MB)")
        files += copied
    services = _dump_services(settings, partial)
    if services:
        say(f"backup: {json.dumps(services)} from the servers (MongoDB, Redis)")
    s3 = aws.client("s3", settings)
    objects = []
    for bucket in bucket_names(settings):
        objects += _copy_bucket(settings, s3, bucket, partial, feature_store=bucket == settings.s3_bucket, say=say)
    manifest = {"stamp": stamp, "created": datetime.now(UTC).isoformat(), "state_dir": str(state), "files": files}
    manifest |= {"trees": sorted(trees), "s3": objects, "counts": counts(partial), "services": services}
    manifest["service_files"] = {
        str(p.relative_to(partial)): sha256(p) for p in sorted((partial / SERVICES).rglob("*")) if p.is_file()
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


def _copy_bucket(
    settings: Settings, s3: Any, bucket: str, partial: Path, feature_store: bool, say: Say
) -> list[dict[str, Any]]:
    """Every object of one bucket into `partial`/s3/<bucket>/. The feature store must answer; a BACKUP_BUCKETS
    bucket that does not exist yet (no artifact logged) holds nothing to lose and is said so."""
    objects = []
    try:
        for item in aws.list_objects(s3, bucket):
            target = partial / "s3" / bucket / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            objects.append({"bucket": bucket, "key": item["Key"], "bytes": item["Size"]})
    except Exception as error:  # botocore's errors: the backup is refused rather than taken without the store
        if not feature_store and "NoSuchBucket" in str(error):
            say(f"backup: s3://{bucket} (BACKUP_BUCKETS) does not exist: nothing of it to back up")
            return []
        shutil.rmtree(partial, ignore_errors=True)
        setting = "S3_BUCKET" if feature_store else "BACKUP_BUCKETS"
        where = f"{setting}, {aws.describe_endpoint(settings)}"
        raise BackupError(f"cannot read s3://{bucket} ({where}): {error}") from error
    say(f"backup: {len(objects)} objects of s3://{bucket}")
    return objects


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
            if sha256(folder / entry_tree(entry) / entry["path"]) != entry["sha256"]:
                raise BackupError(f"{source}: {entry['path']} does not match its checksum: the backup is damaged")
        for path, digest in manifest.get("service_files", {}).items():
            if sha256(folder / path) != digest:
                raise BackupError(f"{source}: {path} does not match its checksum: the backup is damaged")
        folders = _put_trees_back(settings, folder, manifest, force)
        pending = state / PENDING
        shutil.rmtree(pending, ignore_errors=True)
        if (folder / "s3").is_dir():
            shutil.copytree(folder / "s3", pending / "s3")
        if (folder / SERVICES).is_dir():
            shutil.copytree(folder / SERVICES, pending / SERVICES)
        (pending / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (pending / MANIFEST).write_text(json.dumps({"stamp": manifest["stamp"], "s3": manifest["s3"]}))
    say(f"restore: {len(manifest['files'])} files into {', '.join(map(str, folders))}")
    pushed = finish_restore(settings, say=say, quiet=True)
    if pushed is None:
        say(
            f"restore: what S3, MongoDB or Redis did not take yet waits in {state / PENDING}: the next start puts it "
            "back before anything reads it (natively `make up`; compose `make setup-model-serve`, after MongoDB and "
            "Redis start)"
        )
    return manifest


def _put_trees_back(settings: Settings, folder: Path, manifest: dict[str, Any], force: bool) -> list[Path]:
    """Each tree's files into its folder; existing files refused, or with `force` moved aside first (per folder,
    into before-restore-<stamp>/). Every target is resolved before anything moves."""
    targets = {tree: target_folder(settings, tree) for tree in sorted({entry_tree(e) for e in manifest["files"]})}
    present = [
        (tree, e["path"])
        for e in manifest["files"]
        for tree in [entry_tree(e)]
        if (targets[tree] / e["path"]).exists() and not (tree == "state" and e["path"] == SECRETS)
    ]
    if present and not force:
        names = [path if tree == "state" else f"{tree}/{path}" for tree, path in present]
        raise BackupError(
            f"STATE_DIR={settings.state_dir} already holds {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}: "
            "restore into an empty state (make reset_all) or pass --force (FORCE=1) to move them aside first"
        )
    stamp = _stamp()
    holds_secrets = any(entry_tree(e) == "state" and e["path"] == SECRETS for e in manifest["files"])
    if holds_secrets and (settings.state_dir / SECRETS).exists():
        present.append(("state", SECRETS))
    for tree, path in present:
        aside = targets[tree] / f"before-restore-{stamp}" / path
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(targets[tree] / path, aside)
    for entry in manifest["files"]:
        target = targets[entry_tree(entry)] / entry["path"]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / entry_tree(entry) / entry["path"], target)
        except PermissionError as error:
            raise BackupError(
                f"cannot write {target} ({error.strerror}): the folder must belong to the user the restore runs as "
                f"(uid {os.getuid()})"
            ) from error
    if (settings.state_dir / SECRETS).exists():
        os.chmod(settings.state_dir / SECRETS, 0o600)
    return list(targets.values())


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
        for bucket in sorted({item["bucket"] for item in staged["s3"]}):
            aws.ensure_bucket(s3, bucket, settings.aws_region)
        for item in staged["s3"]:
            body = (pending / "s3" / item["bucket"] / item["key"]).read_bytes()
            s3.put_object(Bucket=item["bucket"], Key=item["key"], Body=body)
    except (BotoCoreError, ClientError) as error:
        if not quiet:
            raise BackupError(
                f"the restored objects could not go back into S3 ({aws.describe_endpoint(settings)}): {error}; "
                f"they stay in {pending}"
            ) from error
        return None
    (pending / MANIFEST).write_text(json.dumps({**staged, "s3": []}))  # pushed: a retry does not push them again
    shutil.rmtree(pending / "s3", ignore_errors=True)
    if staged["s3"]:
        buckets = ", ".join(f"s3://{b}" for b in sorted({item["bucket"] for item in staged["s3"]}))
        say(f"restore: {len(staged['s3'])} objects of backup {staged['stamp']} back in {buckets}")
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
