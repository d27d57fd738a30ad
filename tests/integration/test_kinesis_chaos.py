"""The Kinesis consumer SIGKILLed three times during 10k records (real moto Kinesis, real subprocess).

After the restarts every request id has a result; duplicates are counted and explained: delivery is at-least-once
(a shard's checkpoint is saved after its batch's results), so a batch in flight at a kill may be written twice,
at most one batch per shard per kill. Downstream dedupes by request id.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mlops.stores.prediction_log.sqlite_rows import unpack_id
from native.throwaway import stop_process
from tests.support.kinesis import Consumer, envelopes, make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

RECORDS = 10_000
BATCH = 100
KILL_AT = (2_000, 4_500, 7_000)  # results written when each SIGKILL lands
SHARDS = 2


def test_three_sigkills_during_10k_records_lose_no_id(
    kinesis: Any,
    consumer_env: dict[str, str],
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    streams = make_streams(kinesis, SHARDS)
    env = {**consumer_env, **streams.env(), "STATE_DIR": str(tmp_path)}
    sent = envelopes(sample_records, RECORDS, "chaos")
    put_envelopes(kinesis, streams.predictions, sent)
    wanted = {e["request_id"] for e in sent}
    at_kills: list[int] = []
    for threshold in KILL_AT:
        before = at_kills[-1] if at_kills else 0
        consumer = Consumer(env, tmp_path, "--batch-size", str(BATCH))
        try:
            wait_until(
                lambda c=consumer, n=threshold - before: c.metric("kinesis_results_out_total") >= n,
                120,
                f"{threshold} results",
                interval=0.02,
            )
            consumer.kill()
        finally:
            stop_process(consumer.process)
        at_kills.append(len(read_stream(kinesis, streams.results)))
    assert at_kills[-1] < RECORDS, f"finished ({at_kills}) before the last kill: the test proves nothing"

    last = Consumer(env, tmp_path, "--batch-size", str(BATCH))
    try:
        wait_until(
            lambda: {r["request_id"] for r in read_stream(kinesis, streams.results)} >= wanted,
            180,
            f"every id after the restarts; log:\n{last.tail()}",
            interval=1.0,
        )
        assert last.terminate() == 0
    finally:
        stop_process(last.process)
    counts = Counter(r["request_id"] for r in read_stream(kinesis, streams.results))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(
        f"\n{RECORDS} records, SIGKILL at {at_kills} results; in the end {sum(counts.values())} results, "
        f"{len(counts)} distinct ids, {duplicates} duplicate result(s)"
    )
    assert set(counts) == wanted
    # at-least-once: per kill at most one in-flight batch per shard is written again
    assert duplicates <= len(KILL_AT) * SHARDS * BATCH
    with sqlite3.connect(tmp_path / "predictions.sqlite") as db:
        logged = {unpack_id(row[0]) for row in db.execute("SELECT DISTINCT request_id FROM predictions")}
    assert logged == wanted, f"{len(wanted - logged)} request id(s) missing from the prediction log"
