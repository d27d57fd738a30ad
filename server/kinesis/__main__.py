"""`python -m server.kinesis`: score records from the Kinesis predictions stream (server.kinesis.consumer).

Checks the three streams and loads the model before it starts (a missing stream or a dead MLflow without a cached
model is exit code 2 with the setting named), serves its metrics on KINESIS_METRICS_PORT, follows the registry
between batches (RUN_ID empty) and stops cleanly on SIGTERM.

`--group-member I` is how the runtimes start it (supervisord's numprocs natively, `--scale serve-kinesis=N` in
compose): member I of the stream's consumer group, sharing the shards through the lease table.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.model_service import ModelService
from mlops.scale_settings import GROUP_LEASE_TABLE
from mlops.settings import ConfigurationError, Settings, load_settings
from server.kinesis.consumer import KinesisConsumer
from server.kinesis.leases import LeaseCheckpoints
from server.kinesis.metrics import ConsumerMetrics
from server.registry_follower import RegistryFollower
from server.shadow import shadow_for
from server.sinks import PredictionSink, build_sinks, close_all

log = logging.getLogger("serve_kinesis")


def _check_streams(client: Any, settings: Settings) -> None:
    for setting, stream in (
        ("KINESIS_PREDICTIONS_STREAM", settings.kinesis_predictions_stream),
        ("KINESIS_RESULTS_STREAM", settings.kinesis_results_stream),
        ("KINESIS_DEAD_LETTER_STREAM", settings.kinesis_dead_letter_stream),
    ):
        try:
            client.describe_stream_summary(StreamName=stream)
        except EndpointConnectionError as error:
            raise ServiceUnavailable(
                f"Kinesis is unreachable ({aws.describe_endpoint(settings)}); start it or fix AWS_ENDPOINT_URL"
            ) from error
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ServiceUnavailable(
                    f"Kinesis stream '{stream}' does not exist (setting {setting}); create it with `make init_aws`"
                ) from error
            raise


def as_group_member(settings: Settings, member: int) -> Settings:
    """Member `member` of the runtime's group. Its worker id is stable across restarts, so a member supervisord
    restarts after a crash resumes its own leases at once instead of waiting out the lease timeout."""
    if member < 0:
        raise ConfigurationError(f"--group-member must be >= 0, got {member}")
    worker = settings.kinesis_worker_id or f"{socket.gethostname()}-kinesis-{member}"
    return settings.model_copy(
        update={"kinesis_lease_table": settings.group_lease_table(), "kinesis_worker_id": worker}
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.kinesis",
        description="Score records from the Kinesis predictions stream and write results "
        '(envelope: {"request_id": "...", "record": {...}}).',
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="seconds to wait after a round that read nothing (latency vs. GetRecords calls)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="GetRecords Limit (default MAX_BATCH_RECORDS)")
    parser.add_argument("--metrics-port", type=int, default=None, help="default KINESIS_METRICS_PORT")
    parser.add_argument(
        "--group-member",
        type=int,
        default=None,
        metavar="I",
        help="join the consumer group as member I: leases in KINESIS_LEASE_TABLE (default "
        f"{GROUP_LEASE_TABLE}), metrics on KINESIS_METRICS_PORT + I, worker id <hostname>-kinesis-I "
        "(default: a lone consumer, checkpoints in STATE_DIR unless KINESIS_LEASE_TABLE is set)",
    )
    parser.add_argument("--no-sinks", action="store_true", help="do not write the prediction log / drift service")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prometheus_client import start_http_server

    try:
        settings = load_settings(args.env)
        if args.group_member is not None:
            settings = as_group_member(settings, args.group_member)
        client = aws.client("kinesis", settings)
        _check_streams(client, settings)
        service = ModelService.from_settings(settings)
        metrics = ConsumerMetrics()
        sinks: list[PredictionSink] = (
            [] if args.no_sinks else build_sinks(settings, service.spec.name, metrics.registry)
        )
        consumer = KinesisConsumer(
            settings,
            service,
            sinks,
            client,
            metrics=metrics,
            poll_interval_s=args.poll_interval,
            batch_limit=args.batch_size,
            shadow=shadow_for(settings, sinks),
        )
    except (ConfigurationError, ServiceUnavailable) as error:
        print(f"serve_kinesis: error: {error}", file=sys.stderr)
        return 2
    consumer.follower = RegistryFollower(settings, service.run_id, consumer.switch_model)
    port = args.metrics_port or settings.kinesis_metrics_port + (args.group_member or 0)
    try:
        start_http_server(port, addr=settings.api_host, registry=consumer.metrics.registry)
    except OSError as error:
        print(
            f"serve_kinesis: error: metrics port {settings.api_host}:{port} unavailable ({error}); "
            "set KINESIS_METRICS_PORT",
            file=sys.stderr,
        )
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: finishing the batch in progress, then stopping", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "consuming %s -> %s (dead letters: %s) with model %s; metrics on http://%s:%d/metrics",
        settings.kinesis_predictions_stream,
        settings.kinesis_results_stream,
        settings.kinesis_dead_letter_stream,
        service.run_id,
        settings.api_host,
        port,
    )
    try:
        consumer.run()
    finally:
        if isinstance(consumer.checkpoints, LeaseCheckpoints):
            consumer.checkpoints.close()  # leases handed over at once, not after the timeout
        close_all(sinks, 10.0)
        if consumer.shadow is not None:
            consumer.shadow.close()
    log.info("stopped cleanly; checkpoints in %s", consumer.checkpoints.path if consumer.checkpoints else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
