"""The consumer's Prometheus metrics, in their own registry (served on KINESIS_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsumerMetrics:
    """The consumer's Prometheus metrics, in their own registry (served on KINESIS_METRICS_PORT)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("kinesis_records_in", "Records read from the predictions stream", registry=r)
        self.results_out = Counter("kinesis_results_out", "Results written to the results stream", registry=r)
        self.dead_letters = Counter(
            "kinesis_dead_letters",
            "Records sent to the dead-letter stream, by field at fault and kind of reason "
            "(envelope, text, record, unknown_customer, internal)",
            ["field", "reason"],
            registry=r,
        )
        self.iterator_age = Gauge(
            "kinesis_iterator_age_seconds",
            "Age of the newest record of the last batch read, by shard (how far the consumer is behind)",
            ["shard"],
            registry=r,
        )
        self.last_batch = Gauge(
            "kinesis_last_poll_timestamp_seconds", "When the consumer last finished a round over its shards", registry=r
        )
        self.batch_seconds = Histogram(
            "kinesis_batch_seconds",
            "Time to validate, score and write one GetRecords batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "kinesis_batch_records",
            "Records per GetRecords batch",
            buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
            registry=r,
        )
        self.lag = Gauge(
            "kinesis_millis_behind_latest", "MillisBehindLatest of the last GetRecords", ["shard"], registry=r
        )
        self.batch_failures = Counter(
            "kinesis_batch_failures",
            "Batches whose output could not be written (retried from the checkpoint)",
            registry=r,
        )
        self.shards = Gauge("kinesis_shards_active", "Shards being read", registry=r)
        self.model_info = Gauge("kinesis_model_info", "The model that scores", ["run_id"], registry=r)
