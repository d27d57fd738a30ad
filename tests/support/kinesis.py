"""Kinesis helpers on the session's moto server: streams, envelopes in, results out, the consumer as a process."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from mlops import aws
from native.throwaway import free_port, start_process, wait_for_http


@dataclass
class Streams:
    predictions: str
    results: str
    dead_letters: str

    def env(self) -> dict[str, str]:
        return {
            "KINESIS_PREDICTIONS_STREAM": self.predictions,
            "KINESIS_RESULTS_STREAM": self.results,
            "KINESIS_DEAD_LETTER_STREAM": self.dead_letters,
        }


def make_streams(client: Any, shards: int = 2) -> Streams:
    tag = uuid.uuid4().hex[:8]
    streams = Streams(f"t-{tag}-predictions", f"t-{tag}-results", f"t-{tag}-dead")
    for name in (streams.predictions, streams.results, streams.dead_letters):
        aws.ensure_stream(client, name, shards)
    return streams


def put_envelopes(client: Any, stream: str, envelopes: list[dict[str, Any]] | list[bytes]) -> set[str]:
    """PutRecords in chunks of 500 (retrying failed entries); returns the shard ids that received records."""
    shards: set[str] = set()
    entries = [
        (e if isinstance(e, bytes) else json.dumps(e).encode(), e["request_id"] if isinstance(e, dict) else "x")
        for e in envelopes
    ]
    for start in range(0, len(entries), 500):
        pending = entries[start : start + 500]
        for _ in range(10):
            response = client.put_records(
                StreamName=stream, Records=[{"Data": d, "PartitionKey": k} for d, k in pending]
            )
            shards |= {r["ShardId"] for r in response["Records"] if "ShardId" in r}
            pending = [p for p, r in zip(pending, response["Records"], strict=True) if "ErrorCode" in r]
            if not pending:
                break
        assert not pending, f"{len(pending)} records could not be put"
    return shards


def read_stream(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every record of every shard, from the oldest."""
    found: list[dict[str, Any]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            found.extend(json.loads(r["Data"]) for r in response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Consumer:
    """`python -m server.kinesis` in its own process group, against the test servers."""

    def __init__(self, env: dict[str, str], state_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.log = state_dir / "logs" / f"serve-kinesis-{self.port}.log"
        self.env = {**env, "KINESIS_METRICS_PORT": str(self.port)}
        self.process = start_process([sys.executable, "-m", "server.kinesis", *args], self.log, self.env)
        wait_for_http(self.metrics_url, 180, self.process, self.log)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def metric(self, name: str) -> float:
        for line in requests.get(self.metrics_url, timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def envelopes(records: list[dict[str, Any]], n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"request_id": f"{prefix}-{i:05d}", "record": records[i % len(records)]} for i in range(n)]
