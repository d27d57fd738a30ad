"""`make quarantine`: what the stores refused for its content, and a way to write it once the cause is fixed.

    python -m mlops.quarantine list                   # per store: entries held, by reason
    python -m mlops.quarantine show [--limit 20]      # the entries themselves (JSON lines, as kept)
    python -m mlops.quarantine replay                 # write what the store now takes; keep the rest
    python -m mlops.quarantine clear --yes            # delete what is held (after a look: it is not recoverable)

Entries land here when a store raised on them for what they hold (see mlops.stores.quarantine): they are kept, never
dropped while the folder holds less than QUARANTINE_MAX_BYTES, and counted in `/health`'s problems and the metric
`prediction_log_quarantined_entries`; past that bound new refusals are only counted (`dropped`, also in /health).
Exit 0; 2 when the store is down (nothing is lost: the files stay).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlops.settings import ConfigurationError, load_settings
from mlops.stores.base import StoreUnavailable
from mlops.stores.quarantine import Quarantine, quarantine_dir

STORES = ("prediction-log", "outcomes", "online")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.quarantine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["list", "show", "replay", "clear"], nargs="?", default="list")
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--store", choices=STORES, default=STORES[0])
    parser.add_argument("--limit", type=int, default=20, help="show: at most this many entries (default 20)")
    parser.add_argument("--yes", action="store_true", help="clear: really delete the held entries")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
    except ConfigurationError as error:
        print(f"quarantine: error: {error}", file=sys.stderr)
        return 2
    quarantine = Quarantine(quarantine_dir(settings.state_dir, args.store), settings.quarantine_max_bytes)
    if args.action == "list":
        print(f"{args.store}: {quarantine.count()} quarantined entr{'y' if quarantine.count() == 1 else 'ies'} "
              f"in {quarantine.directory}")  # fmt: skip
        for reason, count in sorted(quarantine.reasons().items(), key=lambda item: -item[1]):
            print(f"  {count:>8}  {reason}")
        print(f"  {quarantine.size():,} of QUARANTINE_MAX_BYTES={quarantine.max_bytes:,} bytes used; "
              f"{quarantine.dropped()} refused entries dropped while it was full")  # fmt: skip
        return 0
    if args.action == "clear":
        if not args.yes:
            print("quarantine: error: clear deletes the held entries for good; add --yes", file=sys.stderr)
            return 2
        print(f"{args.store}: {quarantine.clear()} entries deleted from {quarantine.directory}")
        return 0
    if args.action == "show":
        for i, line in enumerate(quarantine.entries()):
            if i >= args.limit:
                print(f"... (--limit {args.limit}; {quarantine.count()} in all)")
                break
            print(json.dumps(line))
        return 0
    write, close = _writer(args.store, settings)
    try:
        written, kept = quarantine.replay(write)
    except StoreUnavailable as error:
        print(f"quarantine: error: {error}; nothing was lost, run again when it is back", file=sys.stderr)
        return 2
    finally:
        close()
    print(f"{args.store}: {written} written, {kept} still refused (kept in {quarantine.directory})")
    return 0


def _writer(store: str, settings: Any) -> tuple[Callable[[list[dict[str, Any]]], None], Callable[[], None]]:
    """How to write one kind of quarantined entry back, and how to close what that opened."""
    if store == "outcomes":
        from datetime import datetime

        from mlops.outcomes import Outcome
        from mlops.stores.outcomes import open_outcome_store

        outcomes = open_outcome_store(settings)

        def ingest(entries: list[dict[str, Any]]) -> None:
            outcomes.ingest([
                Outcome(e["request_id"], e["customer_id"], e["label"], datetime.fromisoformat(e["observed_at"]))
                for e in entries
            ])  # fmt: skip

        return ingest, outcomes.close
    if store == "online":
        from mlops.stores.online import open_online_store

        online = open_online_store(settings)

        def put(entries: list[dict[str, Any]]) -> None:
            for e in entries:
                online.write(e["dataset"], [(e["customer_id"], e["features"])], e["snapshot"])

        return put, online.close
    from mlops.stores.prediction_log import open_store

    predictions = open_store(settings.prediction_log_location)
    return predictions.write_many, predictions.close


if __name__ == "__main__":
    sys.exit(main())
