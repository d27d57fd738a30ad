"""The embedded engine: blocks of files scored by a process pool sized to the cores.

Each worker process loads the model once (from `ModelPayload` bytes, `nthread=1`) and opens the two stores once,
then handles whole blocks: read every file, score the block (`batch.scoring.score_frames`), write one Parquet per
input, and hand back one small result record per file. Only those records cross the process boundary.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from batch.manifest import output_name
from batch.scoring import Aggregate, ModelPayload, column_types, parse_block, score_frames, table_bytes
from batch.storage import InputFile, Store, open_store
from mlops.data import DataError
from mlops.model import ModelBundle
from mlops.settings import Settings

MAX_FILES_PER_BLOCK = 64
MAX_BYTES_PER_BLOCK = 16 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, picklable: the model, where to read and write, which aggregates."""

    payload: ModelPayload
    input_uri: str
    output_uri: str
    settings: Settings | None
    aggregates: tuple[Aggregate, ...] = ()
    explain: int = 0  # top reasons per row in the outputs (mlops.explain); 0: none


class BlockScorer:
    """A job bound to its loaded model and opened stores; one per worker process (or Spark executor)."""

    def __init__(self, job: Job, bundle: ModelBundle | None = None) -> None:
        self.job = job
        self.bundle = bundle or job.payload.load()
        self.source: Store = open_store(job.input_uri, job.settings)
        self.sink: Store = open_store(job.output_uri, job.settings)
        self.types = column_types(self.bundle.spec)

    def score(self, files: Sequence[InputFile]) -> list[dict[str, Any]]:
        """Read, score and write a block; returns one record per file (scored or rejected, never raised)."""
        run_id = self.job.payload.run_id
        records: dict[str, dict[str, Any]] = {}
        read: list[tuple[str, bytes]] = []
        for file in files:
            records[file.name] = {
                "input": file.uri, "input_name": file.name, "fingerprint": file.fingerprint, "run_id": run_id
            }  # fmt: skip
        for file, data in settled(self.source.read, [f.name for f in files], self.source.concurrency, files):
            if isinstance(data, Exception):  # unreadable (permissions, S3 error): reject, go on
                reason = f"cannot read {file.name}: {type(data).__name__}: {data}"
                records[file.name].update(status="rejected", reason=reason)
            else:
                read.append((file.name, data))
        frames = []
        for name, parsed in parse_block(read, self.types):
            if isinstance(parsed, DataError):
                records[name].update(status="rejected", reason=str(parsed))
            else:
                frames.append((name, parsed))
        outputs = []
        for result in score_frames(self.bundle, frames, self.job.aggregates, self.job.explain):
            if result.table is None:
                records[result.name].update(status="rejected", reason=result.reason)
            else:
                outputs.append(result)

        def write(result: Any) -> str:
            return self.sink.write(output_name(run_id, result.name), table_bytes(result.table))

        for result, written in settled(write, outputs, self.sink.concurrency, outputs):
            if isinstance(written, Exception):
                reason = f"cannot write output: {type(written).__name__}: {written}"
                records[result.name].update(status="rejected", reason=reason)
            else:
                records[result.name].update(status="scored", output=written, rows=result.rows)
        return [records[file.name] for file in files]


def settled(
    function: Callable[[Any], Any], arguments: Sequence[Any], concurrency: int, keys: Sequence[Any]
) -> list[tuple[Any, Any]]:
    """(key, function(argument) or the exception it raised) for each pair, in order; up to `concurrency` calls in
    flight (threads: S3 GETs and PUTs wait on the network, not on the GIL)."""

    def call(argument: Any) -> Any:
        try:
            return function(argument)
        except Exception as error:  # a failure is a result here: the caller rejects that one file
            return error

    if concurrency <= 1 or len(arguments) <= 1:
        return list(zip(keys, map(call, arguments), strict=True))
    with ThreadPoolExecutor(min(concurrency, len(arguments)), thread_name_prefix="batch-io") as pool:
        return list(zip(keys, pool.map(call, arguments), strict=True))


def plan_blocks(files: Sequence[InputFile], workers: int) -> list[list[InputFile]]:
    """Group small files into blocks (amortizing one predict and one IPC round trip over many files) while leaving
    at least ~4 blocks per worker so the pool stays balanced."""
    if not files:
        return []
    per_block = max(1, min(MAX_FILES_PER_BLOCK, -(-len(files) // (workers * 4))))
    blocks: list[list[InputFile]] = []
    current: list[InputFile] = []
    size = 0
    for file in files:
        if current and (len(current) >= per_block or size + file.size > MAX_BYTES_PER_BLOCK):
            blocks.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    blocks.append(current)
    return blocks


# ----------------------------------------------------------------------------------------------- process pool
_scorer: BlockScorer | None = None


def _init_worker(job: Job) -> None:
    global _scorer
    os.environ["OMP_NUM_THREADS"] = "1"
    _scorer = BlockScorer(job)


def _score_in_worker(files: list[InputFile]) -> list[dict[str, Any]]:
    assert _scorer is not None, "worker not initialized"
    return _scorer.score(files)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def warm_up_helpers(workers: int) -> None:
    """Start the helpers' fork server now (it imports this module, ~1.5 s, in its own process) so that its start
    overlaps the listing of the input and the manifest, not the scoring. Once per process; nothing for 1 worker."""
    if workers > 1:
        from multiprocessing import forkserver

        _helper_context()
        forkserver.ensure_running()


def _helper_context() -> Any:
    """forkserver: helpers fork from a clean single-threaded server process that imported this module once.

    Not fork: this process may have threads (boto3, rich, OpenMP) by now. Not spawn: each helper would import the
    parent's __main__ again (`python -m batch.deployments` drags Prefect into every helper) and this module's
    dependencies (~1.5 s a helper). The server lives as long as this process, so the helpers of a later run (every
    poll of `python -m batch watch`, the daily deployment) start in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["batch.engine"])  # and not "__main__"
    return context


def run_embedded(
    job: Job, blocks: Sequence[list[InputFile]], workers: int, bundle: ModelBundle | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yield each block's records as it finishes. This process is one of the `workers`: it scores blocks itself
    while the pool's `workers - 1` processes start and score beside it. (A spawned worker needed ~3 s to import
    pandas, pyarrow, xgboost and mlflow; with the parent idle meanwhile, 2 workers scored 3,000 files slower than 1.)
    workers=1 starts no pool."""
    scorer = BlockScorer(job, bundle)
    if workers <= 1 or len(blocks) <= 1:
        for block in blocks:
            yield scorer.score(block)
        return
    context = _helper_context()
    helpers = workers - 1
    with ProcessPoolExecutor(helpers, mp_context=context, initializer=_init_worker, initargs=(job,)) as pool:
        pending: set[Future[list[dict[str, Any]]]] = set()
        queue = iter(blocks)

        def refill() -> None:  # a bounded number of blocks in flight in the pool
            while len(pending) < helpers * 2 and (following := next(queue, None)) is not None:
                pending.add(pool.submit(_score_in_worker, following))

        refill()
        while True:
            finished = {future for future in pending if future.done()}
            pending -= finished
            for future in finished:
                yield future.result()
            refill()
            own = next(queue, None)
            if own is None:
                break
            yield scorer.score(own)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
