"""Act like the business over Kinesis: put records sampled from the feature store on the predictions stream.

    python -m simulation_business.send_data_kinesis --count 10 --interval 1 --read-results
    python -m simulation_business.send_data_kinesis --batch 50 --drift --interval 5

Each record is the envelope {"request_id": "<uuid>", "record": {...}} with the request id as partition key.
--read-results reads the results stream (from the moment the sender started) and prints each result matched to a
request it sent, with the put-to-result latency. Streams come from KINESIS_PREDICTIONS_STREAM /
KINESIS_RESULTS_STREAM, the endpoint from AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from mlops import aws
from mlops.settings import Settings
from simulation_business.options import (
    add_outcome_options,
    add_traffic_options,
    parse_traffic_args,
    settings_and_spec,
)
from simulation_business.outcomes import sender_from_args
from simulation_business.sampling import ENVELOPE_ID, envelope, sample
from simulation_business.send_data_api import default_url
from simulation_business.source import load_pool


class StreamError(RuntimeError):
    """The stream cannot be used; the message names the setting to fix."""


def _explain(error: Exception, stream: str, setting: str, settings: Settings) -> StreamError:
    if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
        return StreamError(f"Kinesis stream '{stream}' does not exist (setting {setting}); run `make init_aws`")
    if isinstance(error, EndpointConnectionError):
        return StreamError(f"Kinesis unreachable ({aws.describe_endpoint(settings)}): start it or fix AWS_ENDPOINT_URL")
    return StreamError(f"Kinesis call on '{stream}' failed: {error}")


def put_envelopes(client: Any, stream: str, envelopes: list[dict[str, Any]], attempts: int = 6) -> None:
    """PutRecords, retrying the entries that failed (throttling, partial failures)."""
    pending = [(json.dumps(e).encode(), str(e[ENVELOPE_ID])) for e in envelopes]
    for attempt in range(attempts):
        response = client.put_records(
            StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in pending]
        )
        pending = [entry for entry, r in zip(pending, response["Records"], strict=True) if "ErrorCode" in r]
        if not pending:
            return
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise StreamError(f"{len(pending)} record(s) could not be put on '{stream}' after {attempts} attempts")


class ResultReader:
    """Follows every shard of the results stream from the moment it was created (LATEST at that time)."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.iterators: dict[str, str | None] = {}
        for shard in client.list_shards(StreamName=stream)["Shards"]:
            self.iterators[shard["ShardId"]] = client.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]

    def poll(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for shard_id, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            response = self.client.get_records(ShardIterator=iterator, Limit=1000)
            self.iterators[shard_id] = response.get("NextShardIterator")
            for record in response.get("Records", []):
                try:
                    found.append(json.loads(record["Data"]))
                except ValueError:
                    continue
        return found


def _report(results: list[dict[str, Any]], pending: dict[str, float]) -> int:
    matched = 0
    now = time.monotonic()
    for result in results:
        sent_at = pending.pop(str(result.get("request_id")), None)
        if sent_at is None:
            continue  # someone else's request
        matched += 1
        print(
            f"result {result['request_id']} churn chance {result.get('churn chance', float('nan')):.4f} "
            f"model {result.get('model_run_id')} after {now - sent_at:.2f}s",
            flush=True,
        )
    return matched


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulation_business.send_data_kinesis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_traffic_options(parser, "put")
    parser.add_argument("--stream", default=None, help="default KINESIS_PREDICTIONS_STREAM")
    parser.add_argument("--read-results", action="store_true", help="print the results matched by request id")
    parser.add_argument("--results-timeout", type=float, default=30.0, help="with --count: wait this long at the end")
    add_outcome_options(parser)  # outcomes go to the HTTP API's /outcomes, by the envelopes' request ids
    args = parse_traffic_args(parser, argv)
    loaded = settings_and_spec("send_data_kinesis", args.env)
    if loaded is None:
        return 2
    settings, spec = loaded
    stream = args.stream or settings.kinesis_predictions_stream
    client = aws.client("kinesis", settings)
    reader: ResultReader | None = None
    try:
        client.describe_stream_summary(StreamName=stream)
    except (ClientError, BotoCoreError) as error:
        print(
            f"send_data_kinesis: error: {_explain(error, stream, 'KINESIS_PREDICTIONS_STREAM', settings)}",
            file=sys.stderr,
        )
        return 2
    if args.read_results:
        try:
            reader = ResultReader(client, settings.kinesis_results_stream)
        except (ClientError, BotoCoreError) as error:
            explained = _explain(error, settings.kinesis_results_stream, "KINESIS_RESULTS_STREAM", settings)
            print(f"send_data_kinesis: error: {explained}", file=sys.stderr)
            return 2

    pool = load_pool(settings, spec, args.drift, args.drift_strength, args.seed)
    print(f"putting {args.batch} record(s) every {args.interval:g}s on '{stream}' from {pool.origin}", flush=True)
    rng = np.random.default_rng(args.seed)
    outcomes = sender_from_args(args, default_url(settings), spec, pool.labels, settings.api_key)
    session = requests.Session()
    pending: dict[str, float] = {}
    puts = failed = records = matched = 0
    try:
        while not args.count or puts < args.count:
            envelopes = [envelope(r) for r in sample(pool.records, args.batch, rng)]
            try:
                put_envelopes(client, stream, envelopes)
                if outcomes is not None:
                    for sent in envelopes:
                        outcomes.remember(sent[ENVELOPE_ID], [sent["record"]])
                records += len(envelopes)
                now = time.monotonic()
                pending.update({e[ENVELOPE_ID]: now for e in envelopes})
                ids = ", ".join(e[ENVELOPE_ID] for e in envelopes[:3]) + (" ..." if len(envelopes) > 3 else "")
                print(f"put {len(envelopes)} record(s): {ids}", flush=True)
            except (ClientError, BotoCoreError, StreamError) as error:
                failed += 1
                explained = (
                    error
                    if isinstance(error, StreamError)
                    else _explain(error, stream, "KINESIS_PREDICTIONS_STREAM", settings)
                )
                print(f"send_data_kinesis: error: {explained}", file=sys.stderr, flush=True)
            puts += 1
            finished = bool(args.count) and puts >= args.count
            if reader is None:
                if not finished:
                    time.sleep(args.interval)
            else:
                deadline = time.monotonic() + (args.results_timeout if finished else args.interval)
                while True:
                    matched += _report(reader.poll(), pending)
                    remaining = deadline - time.monotonic()
                    if (finished and not pending) or remaining <= 0:
                        break
                    time.sleep(min(0.2, remaining))
            if outcomes is not None:
                outcomes.send_due(session)
            if finished:
                break
        if outcomes is not None:
            outcomes.wait_and_send_rest(session)
    except KeyboardInterrupt:
        pass
    summary: dict[str, Any] = {"puts": puts, "failed": failed, "records": records}
    if outcomes is not None:
        summary |= outcomes.summary()
    if reader is not None:
        summary |= {"results_matched": matched, "results_missing": len(pending)}
    print(json.dumps(summary), flush=True)
    return 1 if failed or (reader is not None and args.count and pending) else 0


if __name__ == "__main__":
    sys.exit(main())
