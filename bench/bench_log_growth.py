"""The prediction log's write cost as it grows: microseconds per row at each checkpoint, with and without customer
ids, and bytes per row on disk (SQLite, the native store).

    .venv/bin/python bench/bench_log_growth.py                                   # 1M rows, checkpoints every 250k
    .venv/bin/python bench/bench_log_growth.py --rows 10000000 --every 1000000   # the issue's 0..10M figures

Rows are written as the API writes them: `SQLiteStore.write_many` in batches of --batch entries made by
`make_entry`, the inputs real cleaned records, a new request id per row (time-ordered, as the API makes them), and
customer ids drawn uniformly from --customers (a card issuer scores the same customers again and again). At every
--every rows the next --probe rows are timed: median and p99 of the per-batch cost, in microseconds per row. The peer
is the same log written without customer ids, side by side in this process, the ratio printed per checkpoint. The
time to make the entries is outside the timed part (only `write_many` is timed).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlops.data import clean, generate_bank_churners  # noqa: E402
from mlops.spec import FeatureSpec  # noqa: E402
from mlops.stores.ids import new_id  # noqa: E402
from mlops.stores.prediction_log import SQLiteStore, make_entry  # noqa: E402


def records() -> list[dict]:
    spec = FeatureSpec.load(ROOT / "features.yaml")
    frame = clean(generate_bank_churners(5000, seed=1), spec)
    return [{c: r[c] for c in spec.feature_columns} for r in frame.to_dict("records")]


def disk_bytes(path: Path) -> int:
    """The database and its WAL (what the log occupies now)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


class Log:
    """One growing log; `write(n, timed)` appends n rows, returning the per-batch microseconds per row if timed."""

    def __init__(self, path: Path, with_ids: bool, customers: int, batch: int, inputs: list[dict]) -> None:
        self.path, self.with_ids, self.customers, self.batch = path, with_ids, customers, batch
        self.store = SQLiteStore(f"sqlite:///{path}")
        self.inputs = inputs
        self.rng = random.Random(7)
        self.written = 0
        self.start = datetime.now(UTC) - timedelta(days=30)

    def _entries(self) -> list[dict]:
        out = []
        for _ in range(self.batch):
            i = self.written
            self.written += 1
            customer = f"{7e8 + self.rng.randrange(self.customers):.0f}" if self.with_ids else None
            when = self.start + timedelta(microseconds=250 * i)  # ~4,000 rows a second of traffic time
            record = self.inputs[i % len(self.inputs)]
            out.append(make_entry(record, 0.3, "a" * 32, "http", new_id(), when, customer_id=customer))
        return out

    def write(self, rows: int, timed: bool) -> list[float]:
        costs = []
        for _ in range(rows // self.batch):
            entries = self._entries()
            started = time.perf_counter()
            self.store.write_many(entries)
            if timed:
                costs.append((time.perf_counter() - started) / len(entries) * 1e6)
        return costs

    def close(self) -> None:
        self.store.close()


def summary(costs: list[float]) -> tuple[float, float]:
    ordered = sorted(costs)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows written in all (default 1M)")
    parser.add_argument("--every", type=int, default=250_000, help="a checkpoint every this many rows")
    parser.add_argument("--probe", type=int, default=20_000, help="rows timed at each checkpoint")
    parser.add_argument("--customers", type=int, default=1_000_000, help="distinct customer ids drawn from")
    parser.add_argument("--batch", type=int, default=50, help="entries per write_many (the API's batch)")
    args = parser.parse_args()
    inputs = records()
    print(f"{'rows':>12} {'with ids us/row p50':>20} {'p99':>8} {'no ids p50':>11} {'ratio':>6} {'bytes/row':>10}")
    with tempfile.TemporaryDirectory() as scratch:
        logs = [Log(Path(scratch) / f"{name}.sqlite", name == "ids", args.customers, args.batch, inputs)
                for name in ("ids", "plain")]  # fmt: skip
        while True:
            at = logs[0].written
            probes = [summary(log.write(args.probe, timed=True)) for log in logs]
            (p50, p99), (plain50, _) = probes
            size = disk_bytes(logs[0].path) / logs[0].written
            ratio = p50 / plain50
            print(f"{at:>12,} {p50:>20.1f} {p99:>8.1f} {plain50:>11.1f} {ratio:>6.2f} {size:>10.0f}", flush=True)
            if at >= args.rows:
                break
            step = min(args.every, args.rows - at) - args.probe
            for log in logs:
                log.write(max(step, 0), timed=False)
        for log in logs:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
