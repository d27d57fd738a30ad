"""Writing to a Kinesis stream: PutRecords in chunks, failed entries retried with backoff, or a PutError."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

PUT_RECORDS_MAX = 500  # Kinesis' limit of entries per PutRecords call


class PutError(RuntimeError):
    """Records could not be written to a stream after retries; the batch is not checkpointed."""


def put_all(
    client: Any,
    stream: str,
    entries: Sequence[tuple[bytes, str]],
    attempts: int = 8,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """PutRecords every (data, partition key), retrying failed entries (partial failures, throttling)."""
    pending = list(entries)
    last_error = ""
    for attempt in range(attempts):
        failed: list[tuple[bytes, str]] = []
        for start in range(0, len(pending), PUT_RECORDS_MAX):
            chunk = pending[start : start + PUT_RECORDS_MAX]
            try:
                response = client.put_records(
                    StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in chunk]
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ResourceNotFoundException":
                    raise PutError(f"stream '{stream}' does not exist; run `make init_aws`") from error
                last_error = code or str(error)
                failed.extend(chunk)
                continue
            except (EndpointConnectionError, BotoCoreError) as error:
                last_error = str(error)
                failed.extend(chunk)
                continue
            for entry, result in zip(chunk, response["Records"], strict=True):
                if "ErrorCode" in result:
                    last_error = f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
                    failed.append(entry)
        if not failed:
            return
        pending = failed
        if attempt + 1 < attempts:
            sleep(min(backoff_s * 2**attempt, 2.0))
    raise PutError(f"{len(pending)} record(s) not written to stream '{stream}' after {attempts} attempts: {last_error}")
