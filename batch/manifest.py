"""The record of what a model has scored: where outputs go, and which inputs are already done.

Layout under the output root, per model run id (so two models never overwrite each other and a new model rescans
everything):

    <output>/<run_id>/predictions/<input name>.parquet     one output per input
    <output>/<run_id>/_manifest/<stamp>.jsonl              one line per scored file (input, output, rows, run id,
                                                           fingerprint); one part per run, since S3 cannot append
    <output>/<run_id>/_rejects/<stamp>.jsonl               one line per rejected file, with the reason

A file counts as done when some manifest part lists its name with the same fingerprint (size+mtime or ETag); a
replaced input is therefore scored again, a rejected one is retried on the next run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

from batch.storage import Store

MANIFEST_DIR = "_manifest"
REJECTS_DIR = "_rejects"
PREDICTIONS_DIR = "predictions"


def output_name(run_id: str, input_name: str) -> str:
    """The input's full name is kept (`a.csv` -> `a.csv.parquet`), so `a.csv` and `a.parquet` never collide."""
    return f"{run_id}/{PREDICTIONS_DIR}/{input_name}.parquet"


def run_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}-{time.time_ns() % 1_000_000:06d}"


def done_fingerprints(store: Store, run_id: str) -> dict[str, str]:
    """{input name: fingerprint} of every file this model has scored, from all manifest parts."""
    done: dict[str, str] = {}
    for name in store.list_names(f"{run_id}/{MANIFEST_DIR}"):
        for line in store.read(name).decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                done[entry["input_name"]] = entry["fingerprint"]
    return done


def write_part(store: Store, run_id: str, folder: str, stamp: str, entries: Iterable[dict[str, Any]]) -> str | None:
    lines = [json.dumps(entry, sort_keys=True) for entry in entries]
    if not lines:
        return None
    return store.write(f"{run_id}/{folder}/{stamp}.jsonl", ("\n".join(lines) + "\n").encode())


def read_rejects(store: Store, run_id: str) -> list[dict[str, Any]]:
    out = []
    for name in store.list_names(f"{run_id}/{REJECTS_DIR}"):
        out += [json.loads(line) for line in store.read(name).decode().splitlines() if line.strip()]
    return out
