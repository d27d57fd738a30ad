"""`make outcomes FILE=path.csv`: load the business's export of observed outcomes into the outcome store.

    python -m mlops.ingest_outcomes outcomes.csv                # CLIENTNUM,Attrition_Flag[,date]
    python -m mlops.ingest_outcomes --env local exports/*.csv

Columns in any spelling: the spec's id column and/or request_id, the label (`label` or the target's name, spelled as
the data set spells it) and optionally `observed_at` / `date`. The whole file is checked first (the first bad row
stops it, named as training data errors are, and nothing is stored); then it is settled against the prediction log
in chunks, with progress. The same file loaded twice counts once. A bad file is reported and the others are loaded.
Exit 0 on success, 2 when a file was refused or the store is dead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from mlops.contract import DataError
from mlops.outcomes import read_outcomes_file
from mlops.settings import ConfigurationError, load_settings
from mlops.spec import FeatureSpec, SpecError
from mlops.stores.outcomes import IngestReport, ingest_isolating, open_outcome_store
from mlops.stores.prediction_log import StoreUnavailable

CHUNK = 5000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.ingest_outcomes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", help="CSV (or .parquet) files of outcomes")
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"outcomes per transaction (default {CHUNK})")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
        spec = FeatureSpec.load(settings.feature_spec)
    except (ConfigurationError, SpecError) as error:
        print(f"ingest_outcomes: error: {error}", file=sys.stderr)
        return 2
    total = IngestReport()
    refused: list[str] = []
    store = open_outcome_store(settings)
    try:
        for path in args.files:
            try:
                outcomes = read_outcomes_file(path, spec)
            except DataError as error:
                print(f"ingest_outcomes: error: {path}: {error}; nothing of this file was stored", file=sys.stderr)
                refused.append(path)
                continue
            started = time.perf_counter()
            for start in range(0, len(outcomes), max(1, args.chunk)):
                chunk = outcomes[start : start + args.chunk]
                try:
                    total.merge(ingest_isolating(store, chunk, settings))
                except StoreUnavailable as error:
                    print(
                        f"ingest_outcomes: error: {error}; {start} of {len(outcomes)} outcomes of {path} stored "
                        "(run again: what is stored counts once)",
                        file=sys.stderr,
                    )
                    return 2
                print(f"{path}: {start + len(chunk)}/{len(outcomes)} outcomes", file=sys.stderr, flush=True)
            elapsed = time.perf_counter() - started
            print(f"{path}: {len(outcomes)} outcomes in {elapsed:.1f}s", file=sys.stderr, flush=True)
    finally:
        store.close()
    print(json.dumps(total.as_dict() | ({"refused_files": refused} if refused else {})), flush=True)
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
