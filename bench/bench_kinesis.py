"""Kinesis put-to-result latency on the moto server at a steady rate, for several consumer poll intervals.

    .venv/bin/python bench/bench_kinesis.py                       # own moto on a free port, model from MLflow
    .venv/bin/python bench/bench_kinesis.py --rate 50 --count 500 --poll-intervals 0.05,0.2,1

For each poll interval, two runs side by side on fresh 2-shard streams:
- baseline: records put on a stream and read back by the same reader (no consumer): the emulator + polling floor;
- consumer: records put on `predictions`, scored by KinesisConsumer (in a thread, no sinks), results read back.
The producer puts one record per PutRecord call at `--rate` records/s (as the business would); latency is the time
from just before PutRecord to the reader seeing the result (same clock, one process). The reader polls every
`--reader-poll` seconds. Goal: consumer p99 <= 1 s. Figures only; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlops import aws  # noqa: E402
from mlops.data import clean, generate_bank_churners  # noqa: E402
from mlops.model_service import ModelService  # noqa: E402
from mlops.settings import Settings, load_settings  # noqa: E402
from server.kinesis.consumer import KinesisConsumer  # noqa: E402
from simulation_business.sampling import to_records  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MOTO_LOG = Path(tempfile.gettempdir()) / "bench-kinesis-moto.log"


def start_moto() -> tuple[subprocess.Popen[Any], str]:
    """Our own moto server; its output goes to MOTO_LOG, named if the run fails (a dead emulator must say so)."""
    port = free_port()
    with MOTO_LOG.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return process, url
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto_server did not start")


class Reader(threading.Thread):
    """Follows every shard of a stream from LATEST and notes when each request id is first seen."""

    def __init__(self, settings: Settings, stream: str, poll_s: float) -> None:
        super().__init__(daemon=True)
        self.client = aws.client("kinesis", settings)
        self.poll_s = poll_s
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.iterators = {
            shard["ShardId"]: self.client.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for shard in self.client.list_shards(StreamName=stream)["Shards"]
        }

    def run(self) -> None:
        while not self.stop.is_set():
            got = 0
            for shard, iterator in list(self.iterators.items()):
                response = self.client.get_records(ShardIterator=iterator, Limit=10_000)
                self.iterators[shard] = response["NextShardIterator"]
                now = time.perf_counter()
                for record in response["Records"]:
                    got += 1
                    self.seen.setdefault(json.loads(record["Data"])["request_id"], now)
            if not got:
                self.stop.wait(self.poll_s)


def produce(
    settings: Settings, stream: str, records: list[dict[str, Any]], rate: float, count: int
) -> dict[str, float]:
    client = aws.client("kinesis", settings)
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        request_id = uuid.uuid4().hex
        data = json.dumps({"request_id": request_id, "record": records[i % len(records)]}).encode()
        sent[request_id] = time.perf_counter()
        client.put_record(StreamName=stream, Data=data, PartitionKey=request_id)
    return sent


def one_run(
    settings: Settings,
    service: ModelService | None,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    poll_s: float,
) -> dict[str, float]:
    """Fresh streams; with a service, through the consumer; without, straight back (baseline)."""
    tag = uuid.uuid4().hex[:6]
    names = {
        "kinesis_predictions_stream": f"b-{tag}-in",
        "kinesis_results_stream": f"b-{tag}-out",
        "kinesis_dead_letter_stream": f"b-{tag}-dead",
    }
    run_settings = settings.model_copy(update=names)
    client = aws.client("kinesis", run_settings)
    for name in names.values():
        aws.ensure_stream(client, name, 2)
    watched = names["kinesis_results_stream"] if service else names["kinesis_predictions_stream"]
    reader = Reader(run_settings, watched, args.reader_poll)
    consumer = None
    if service is not None:
        consumer = KinesisConsumer(
            run_settings, service, [], aws.client("kinesis", run_settings), poll_interval_s=poll_s
        )
        threading.Thread(target=consumer.run, daemon=True).start()
    reader.start()
    sent = produce(run_settings, names["kinesis_predictions_stream"], records, args.rate, args.count)
    deadline = time.monotonic() + 30
    while len(reader.seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.1)
    reader.stop.set()
    if consumer is not None:
        consumer.stop()
    latencies = np.array([reader.seen[rid] - t for rid, t in sent.items() if rid in reader.seen]) * 1000
    return {
        "n": len(latencies),
        "lost": len(sent) - len(latencies),
        "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "max": float(latencies.max()) if len(latencies) else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="records per second")
    parser.add_argument("--count", type=int, default=200, help="records per run")
    parser.add_argument("--poll-intervals", default="0.05,0.2,1.0", help="consumer poll intervals to compare (s)")
    parser.add_argument("--reader-poll", type=float, default=0.05, help="result reader's poll interval (s)")
    parser.add_argument("--endpoint", default=None, help="use this Kinesis endpoint instead of starting moto")
    args = parser.parse_args()

    base = load_settings("local")
    service = ModelService.from_settings(base)  # the model of RUN_ID / the registry (MLflow at MLFLOW_TRACKING_URI)
    moto = None
    endpoint = args.endpoint
    if endpoint is None:
        moto, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory() as state:
            settings = base.model_copy(update={"aws_endpoint_url": endpoint, "state_dir": Path(state)})
            frame = clean(generate_bank_churners(500, seed=11), service.spec, require_target=False)
            records = to_records(frame, service.spec)
            print(
                f"model {service.run_id}; {args.count} records at {args.rate:g}/s per run, 2 shards, "
                f"reader poll {args.reader_poll:g}s, endpoint {endpoint}"
            )
            print(
                f"{'consumer poll':>13} | {'baseline p50':>12} {'p99':>8} | {'consumer p50':>12} {'p99':>8} "
                f"{'max':>8} {'lost':>5} | {'p99 ratio':>9}"
            )
            for poll in (float(p) for p in args.poll_intervals.split(",")):
                baseline = one_run(settings, None, records, args, poll)
                scored = one_run(settings, service, records, args, poll)
                print(
                    f"{poll:>12g}s | {baseline['p50']:>10.1f}ms {baseline['p99']:>6.1f}ms | "
                    f"{scored['p50']:>10.1f}ms {scored['p99']:>6.1f}ms {scored['max']:>6.1f}ms {scored['lost']:>5} | "
                    f"{scored['p99'] / baseline['p99']:>8.1f}x",
                    flush=True,
                )
    except Exception:
        if moto is not None:
            state = "exited with " + str(moto.returncode) if moto.poll() is not None else "still running"
            print(f"run failed; moto_server {state}, its log: {MOTO_LOG}", file=sys.stderr)
        raise
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
