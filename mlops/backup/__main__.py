"""`python -m mlops.backup create|list|restore`: what `make backup` and `make restore` run."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mlops.backup import BackupError, create_backup, default_location, finish_restore, list_backups, restore_backup
from mlops.settings import ConfigurationError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.backup",
        description="Back up the platform's state (STATE_DIR and the feature store bucket) while it runs, list the "
        "backups, or restore one with the platform down.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="take a backup now")
    create.add_argument("--to", default=None, help="folder or s3://bucket/prefix (default: BACKUP_LOCATION)")
    listing = commands.add_parser("list", help="the complete backups of a location, oldest first")
    listing.add_argument("--at", default=None, help="folder or s3://bucket/prefix (default: BACKUP_LOCATION)")
    restore = commands.add_parser("restore", help="restore one backup (the platform stopped)")
    restore.add_argument(
        "source", help="<location>/<stamp>: one backup folder or S3 prefix; a stamp alone: one of BACKUP_LOCATION"
    )
    restore.add_argument("--force", action="store_true", help="move existing state aside instead of refusing")
    commands.add_parser("finish-restore", help="put a restore's staged bucket objects back (make up runs it)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        if args.command == "create":
            manifest = create_backup(settings, args.to or default_location(settings), say=_say)
            print(f"backup: {manifest['location']} {json.dumps(manifest['counts'])}", flush=True)
        elif args.command == "list":
            for stamp in list_backups(settings, args.at or default_location(settings)):
                print(stamp)
        elif args.command == "finish-restore":
            finish_restore(settings, say=_say)
        else:
            source = args.source if "/" in args.source else f"{default_location(settings).rstrip('/')}/{args.source}"
            manifest = restore_backup(settings, source, force=args.force, say=_say)
            print(f"restore: {manifest['stamp']} {json.dumps(manifest['counts'])}; now: make up", flush=True)
    except (BackupError, ConfigurationError) as error:
        print(f"backup: error: {error}", file=sys.stderr)
        return 1
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
