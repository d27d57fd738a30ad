"""`python -m mlops.archive`: archive the prediction log's old rows now (what `make archive` runs)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mlops.archive import ArchiveError, archive_prediction_log
from mlops.aws import ServiceUnavailable
from mlops.settings import ConfigurationError, load_settings
from mlops.stores.base import StoreUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.archive",
        description="Archive predictions, outcomes and settlements older than PREDICTION_RETENTION_DAYS to "
        "s3://<S3_BUCKET>/<ARCHIVE_PREFIX>/ as Parquet, then delete them from the prediction log.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be archived")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        summary = archive_prediction_log(settings, dry_run=args.dry_run, say=lambda line: print(line, flush=True))
    except (ConfigurationError, ServiceUnavailable, StoreUnavailable, ArchiveError, ValueError) as error:
        print(f"archive: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict()) if args.json else summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
