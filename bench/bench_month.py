"""A month in an hour: compressed time through the real services, and what grows, what stays flat.

    .venv/bin/python bench/bench_month.py                                    # 10M predictions, 30 trainings, 30 days
    .venv/bin/python bench/bench_month.py --predictions 2000000 --trainings 8   # shorter, same shape

Real moto, MLflow and Prefect servers (native.throwaway) and the real gunicorn API in a scratch STATE_DIR. Time is
compressed: the month runs from 30 days ago to now. Each simulated day:
- its share of --predictions is logged with that day's timestamps and customer ids drawn from --customers. They go
  straight to the prediction log (SQLiteStore.write_many, batches of 500, as the API's writer batches them): HTTP
  stamps every prediction with the real time, so it cannot carry a month of timestamps; the API is measured apart;
- --outcome-share of them get an outcome by customer id at the end of the day (the outcome store's ingest, the
  code `make outcomes` and POST /outcomes run);
- the archive flow's work runs with that day as "now" (PREDICTION_RETENTION_DAYS = --retention-days, so the
  steady state of a retention window is reached within the month), as the daily deployment would;
- every days/--trainings days a training runs through the real Prefect flow (--trials trials, every trial an MLflow
  child run) and registers a challenger.
At the start and at the end, side by side: POST /predict p50/p99 at the same open-loop --rate for --probe-seconds
(keep-alive, one record a request, the prediction log on), the drift-report flow's wall time, and the promotion
gate's (`judge`: both models re-score the newest settled outcomes). At every --checkpoints: disk used per component.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Target, open_loop, sample_records  # noqa: E402
from native import throwaway  # noqa: E402


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


class Month:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        from mlops.settings import load_settings
        from mlops.spec import FeatureSpec

        self.args = args
        self.state = scratch / "state"
        self.servers = throwaway.start_registry_servers(self.state)
        self.settings = load_settings(
            "local",
            aws_endpoint_url=self.servers.moto_url,
            mlflow_tracking_uri=self.servers.mlflow_url,
            prefect_api_url=self.servers.prefect_api_url,
            state_dir=self.state,
            s3_bucket="bench-month",
            drift_service_url=None,
            run_id=None,
            api_key=None,
            max_evals=args.trials,
            train_threads=1,
            prediction_retention_days=args.retention_days,
        )
        self.spec = FeatureSpec.load(self.settings.feature_spec)
        self.records = sample_records(self.spec, 2000)
        self.rng = random.Random(11)
        self.api: Any = None
        self.port = throwaway.free_port()

    # ------------------------------------------------------------------ platform steps
    def setup(self) -> None:
        from mlops.init_aws import create_resources, load_data

        create_resources(self.settings)
        load_data(self.settings, self.spec, None, rows=5000, seed=7)

    def train(self) -> str:
        from prefect.settings import temporary_settings

        from mlops.prefect_api import client_settings
        from model_orchestration.train_flow import model_tuning_and_uploading

        with temporary_settings(client_settings(self.settings)):
            result = model_tuning_and_uploading(
                max_evals=self.args.trials, env="local", settings_overrides=self.settings.flow_overrides()
            )
        return str(result["run_id"])

    def judge(self) -> str:
        from mlops.promoting import judge

        return judge(self.settings).action

    def report(self) -> str:
        from prefect.settings import temporary_settings

        from mlops.prefect_api import client_settings
        from reporting.create_report import create_report

        with temporary_settings(client_settings(self.settings)):
            return str(create_report(env="local", settings_overrides=self.settings.flow_overrides())["status"])

    def archive(self, now: datetime) -> Any:
        from mlops.archive import archive_prediction_log

        return archive_prediction_log(self.settings, now=now, say=lambda _: None)

    def start_api(self, run_id: str) -> None:
        env = {
            **self.settings.as_env(),
            "RUN_ID": run_id,
            "API_PORT": str(self.port),
            "RATE_LIMIT": "",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        log = self.state / "logs" / "api.log"
        self.api = throwaway.start_process([str(throwaway.VENV_BIN / "python"), "-m", "server.api"], log, env)
        throwaway.wait_for_http(f"http://127.0.0.1:{self.port}/health", 180, self.api, log)

    def probe(self) -> tuple[float, float, int]:
        target = Target("api", self.port, "/predict", [json.dumps(r).encode() for r in self.records[:500]])
        result = open_loop(target, self.args.rate, self.args.probe_seconds, 8)
        return result.pct(0.5), result.pct(0.99), result.errors

    # ------------------------------------------------------------------ simulated traffic
    def log_day(self, day_start: datetime, rows: int, run_id: str) -> list[tuple[str, float]]:
        """`rows` predictions spread over the day; returns (customer id, prediction) of each."""
        from mlops.stores.ids import new_id
        from mlops.stores.prediction_log import SQLiteStore, make_entry

        store = SQLiteStore(self.settings.prediction_log_location)
        made: list[tuple[str, float]] = []
        step = 86_400 / max(rows, 1)
        batch: list[dict[str, Any]] = []
        for i in range(rows):
            customer = f"{7e8 + self.rng.randrange(self.args.customers):.0f}"
            score = self.rng.random()
            when = day_start + timedelta(seconds=i * step)
            record = self.records[i % len(self.records)]
            batch.append(make_entry(record, score, run_id, "http", new_id(), when, customer_id=customer))
            made.append((customer, score))
            if len(batch) == 500:
                store.write_many(batch)
                batch = []
        if batch:
            store.write_many(batch)
        store.close()
        return made

    def outcomes_day(self, day_end: datetime, made: list[tuple[str, float]]) -> int:
        from mlops.outcomes import Outcome
        from mlops.stores.outcomes import SQLiteOutcomeStore

        chosen = self.rng.sample(made, int(len(made) * self.args.outcome_share))
        outcomes = {c: Outcome(None, c, int(self.rng.random() < p), day_end - timedelta(seconds=1)) for c, p in chosen}
        store, settled = SQLiteOutcomeStore(self.settings.prediction_log_location), 0
        items = list(outcomes.values())
        for start in range(0, len(items), 2000):
            settled += store.ingest(items[start : start + 2000]).settled
        return settled

    def disk(self) -> dict[str, int]:
        from mlops import aws
        from mlops.stores.sqlite_file import sqlite_path

        log = sqlite_path(self.settings.prediction_log_location)
        archive = other = 0
        for item in aws.list_objects(aws.client("s3", self.settings), self.settings.s3_bucket, ""):
            if item["Key"].startswith(self.settings.archive_prefix):
                archive += item["Size"]
            else:
                other += item["Size"]
        return {
            "prediction log": sum(p.stat().st_size for p in log.parent.glob(log.name + "*")),
            "mlflow": folder_bytes(self.state / "mlflow"),
            "prefect": folder_bytes(self.state / "prefect"),
            "reports": folder_bytes(self.settings.reports_location),
            "archive (S3)": archive,
            "feature store (S3)": other,
        }

    def stop(self) -> None:
        if self.api is not None:
            throwaway.stop_process(self.api, 20)
        self.servers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--predictions", type=int, default=10_000_000, help="logged over the month, with ids")
    parser.add_argument("--customers", type=int, default=200_000, help="distinct customer ids")
    parser.add_argument("--trainings", type=int, default=30, help="training runs over the month")
    parser.add_argument("--trials", type=int, default=3, help="hyperopt trials per training")
    parser.add_argument("--outcome-share", type=float, default=0.2, help="of a day's predictions, settled")
    parser.add_argument("--retention-days", type=int, default=7, help="PREDICTION_RETENTION_DAYS for the month")
    parser.add_argument("--checkpoints", type=int, default=5, help="disk tables printed over the month")
    parser.add_argument("--rate", type=float, default=50, help="requests/s of the /predict probes")
    parser.add_argument("--probe-seconds", type=float, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the flows' own logs would drown the tables
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    scratch = Path(tempfile.mkdtemp(prefix="bench-month-"))
    os.environ["PREFECT_HOME"] = str(scratch / "prefect-client")
    month = Month(args, scratch)
    started = time.perf_counter()
    try:
        month.setup()
        first_train_s, champion = timed(month.train)
        month.judge()  # the first model becomes the champion
        month.start_api(champion)
        start = {"probe": month.probe()}
        start["report_s"], _ = timed(month.report)
        month.train()
        start["gate_s"], start["gate"] = timed(month.judge)
        p50, p99, errors = start["probe"]
        print(f"start: first training {first_train_s:.1f} s; /predict p50 {p50:.2f} ms p99 {p99:.2f} ms ({errors} "
              f"errors) at {args.rate:.0f}/s; report {start['report_s']:.1f} s; promotion gate {start['gate_s']:.1f} "
              f"s ({start['gate']})", flush=True)  # fmt: skip
        now = datetime.now(UTC)
        month_start = now - timedelta(days=args.days)
        per_day = args.predictions // args.days
        train_every = max(1, args.days // max(args.trainings - 2, 1))
        check_every = max(1, args.days // args.checkpoints)
        totals = {"logged": 0, "settled": 0, "trainings": 2, "archived": 0, "deleted": 0}
        header = ["day", "logged", "settled", "log rows", "archived", *month.disk()]
        print("  ".join(f"{h:>14}" for h in header), flush=True)
        for day in range(args.days):
            day_start = month_start + timedelta(days=day)
            made = month.log_day(day_start, per_day, champion)
            totals["logged"] += len(made)
            totals["settled"] += month.outcomes_day(day_start + timedelta(days=1), made)
            if day % train_every == train_every - 1 and totals["trainings"] < args.trainings:
                month.train()
                totals["trainings"] += 1
            summary = month.archive(day_start + timedelta(days=1))
            totals["archived"] += summary.archived.get("predictions", 0)
            totals["deleted"] += summary.deleted.get("predictions", 0)
            if day % check_every == check_every - 1 or day == args.days - 1:
                from mlops.stores.prediction_log import SQLiteStore

                rows = SQLiteStore(month.settings.prediction_log_location).count()
                disk = month.disk()
                values = [day + 1, totals["logged"], totals["settled"], rows, totals["archived"], *disk.values()]
                print("  ".join(f"{v:>14,}" for v in values), flush=True)
        end = {"probe": month.probe()}
        end["report_s"], _ = timed(month.report)
        month.train()
        end["gate_s"], end["gate"] = timed(month.judge)
        print(f"\nmonth of {args.days} days in {(time.perf_counter() - started) / 60:.1f} min: {totals}")
        print(f"{'':24} {'start':>10} {'end':>10} {'end/start':>10}")
        for name, a, b in (
            ("/predict p50 (ms)", start["probe"][0], end["probe"][0]),
            ("/predict p99 (ms)", start["probe"][1], end["probe"][1]),
            ("report flow (s)", start["report_s"], end["report_s"]),
            ("promotion gate (s)", start["gate_s"], end["gate_s"]),
        ):
            print(f"{name:24} {a:>10.2f} {b:>10.2f} {b / a:>10.2f}")
        print(f"archive: {totals['archived']:,} predictions archived, {totals['deleted']:,} deleted (equal: "
              f"{totals['archived'] == totals['deleted']})")  # fmt: skip
    finally:
        month.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
