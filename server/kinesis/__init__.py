"""Stream serving: the Kinesis consumer (`python -m server.kinesis`).

`envelope` (what a record's Data must be), `shards` (reading every shard from its checkpoint), `consumer` (one
batch: validate, score through the Scorer, write results and dead letters, checkpoint), `writer` (PutRecords with
retries), `checkpoints`, `metrics`.
"""
