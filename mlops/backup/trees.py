"""The folders and buckets a backup holds, and how one folder is copied and put back.

A backup's folders are trees: STATE_DIR is `state/`; with BACKUP_VOLUMES_DIR each of its subfolders is
`volumes/<name>/`. Natively every program shares STATE_DIR, so it is the only tree. Compose gives each service a
volume of its own (MLflow's database, Prefect's, each worker's state): the backup container mounts them all under one
folder, and a restore puts each tree back into the folder of the same name. Its buckets are S3_BUCKET and
BACKUP_BUCKETS (compose: MLflow's artifact bucket, which natively is a folder of STATE_DIR).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from mlops.settings import Settings

STATE_TREE = "state"
VOLUMES = "volumes"
SECRETS = "secrets.env"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_HEADER = b"SQLite format 3\x00"
PENDING = "restore-pending"  # a restore's bucket objects and dumps, until their servers run (the next start)
# rebuilt, re-downloaded or live process plumbing: never in a backup
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
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".sock", ".pid", ".lock", ".tmp")
# what a restore compares: rows per table of the databases it knows, by file name, in whichever tree they are
COUNTED = {
    "predictions.sqlite": ("predictions", "outcomes", "settlements"),
    "online.sqlite": ("online_features",),
    "mlflow.db": ("registered_models", "model_versions", "registered_model_aliases", "runs"),
}


class BackupError(RuntimeError):
    """A backup or restore refused or failed; the message says why and what to do."""


def source_trees(settings: Settings) -> dict[str, Path]:
    """The folders a backup copies, by their name in the backup."""
    trees = {STATE_TREE: settings.state_dir}
    root = settings.backup_volumes_dir
    if root is not None:
        if not root.is_dir():
            raise BackupError(f"BACKUP_VOLUMES_DIR={root} is not a folder: mount the volumes there, or leave it empty")
        trees |= {f"{VOLUMES}/{sub.name}": sub for sub in sorted(root.iterdir()) if sub.is_dir()}
    return trees


def target_folder(settings: Settings, tree: str) -> Path:
    """Where a restore puts one tree back: STATE_DIR, or the volume's folder under BACKUP_VOLUMES_DIR."""
    if tree == STATE_TREE:
        return settings.state_dir
    root = settings.backup_volumes_dir
    name = tree.removeprefix(f"{VOLUMES}/")
    if root is None or not (root / name).is_dir():
        where = f"BACKUP_VOLUMES_DIR={root}" if root else "BACKUP_VOLUMES_DIR is empty"
        raise BackupError(
            f"the backup holds the volume {name!r}, but {where} has no folder {name!r} to restore it into "
            "(compose: `make restore` mounts every volume; natively, restore a native backup)"
        )
    return root / name


def bucket_names(settings: Settings) -> list[str]:
    """S3_BUCKET, then each of BACKUP_BUCKETS (a name or an s3:// URI, whose bucket is taken whole)."""
    names = [settings.s3_bucket]
    for item in settings.backup_buckets.split(","):
        name = item.strip().removeprefix("s3://").split("/")[0]
        if name and name not in names:
            names.append(name)
    return names


def tree_files(folder: Path) -> list[Path]:
    """Every file of a tree a backup holds, relative to it."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or relative.parts[0] in SKIPPED_FOLDERS or relative.parts[0].startswith("."):
            continue
        if path.name.endswith(SKIPPED_SUFFIXES) or relative.parts[0].startswith("before-restore-"):
            continue
        found.append(relative)
    return found


def sha256(path: Path) -> str:
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


def copy_tree(tree: str, source: Path, backup: Path) -> list[dict[str, Any]]:
    """One tree into `backup`/<tree>/: databases through the backup API, other files as they are; its manifest
    entries (path, kind, size, checksum)."""
    entries = []
    for relative in tree_files(source):
        target = backup / tree / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        kind = "sqlite" if relative.suffix in SQLITE_SUFFIXES and _is_sqlite(source / relative) else "file"
        if kind == "sqlite":
            _copy_sqlite(source / relative, target)
        else:
            shutil.copy2(source / relative, target)
        size = target.stat().st_size
        entries.append({"tree": tree, "path": str(relative), "kind": kind, "bytes": size, "sha256": sha256(target)})
    return entries


def entry_tree(entry: dict[str, Any]) -> str:
    return str(entry.get("tree", STATE_TREE))  # backups from before trees held STATE_DIR only


def counts(backup: Path) -> dict[str, int]:
    """Rows per counted table over every tree of a backup folder (summed where a name occurs twice)."""
    totals: dict[str, int] = {}
    roots = [root for root in (backup / STATE_TREE, backup / VOLUMES) if root.is_dir()]
    for name, tables in COUNTED.items():
        for path in sorted(path for root in roots for path in root.rglob(name)):
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                for table in tables:
                    try:
                        rows = int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                    except sqlite3.OperationalError:  # a table this state never had
                        continue
                    totals[table] = totals.get(table, 0) + rows
            finally:
                connection.close()
    return totals
