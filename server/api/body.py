"""Request bodies, read and parsed in one place, so that a keep-alive connection stays in step after a refused call.

gunicorn (26.x) drains at most 64 KiB of a body the application did not read (a call refused before its body: no
key, rate limit, unknown route, MAX_BODY_BYTES exceeded) and beyond that closes the connection *after* an answer
that said `Connection: keep-alive` (it ignores a `Connection` header set by the application). A keep-alive client
(requests, KServe's and MLServer's clients) then sends its next call into a closed socket and gets "Remote end
closed connection without response" for a call that was never bad. So every handler reads its body with
`read_body()`, and the app's `after_request` calls `drain_unread_body`: a body left unread is read and dropped, up
to `cap` bytes, before the answer goes out, and the connection can serve the caller's next call. A body past the
cap is not worth reading for a refused caller; gunicorn then closes the connection, as it would anyway.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, request

from mlops.contract.text import TextError, format_path, loads_text
from server.api.errors import ApiError

log = logging.getLogger(__name__)

GUNICORN_DRAIN_BYTES = 64 * 1024  # gunicorn.http.parser._DRAIN_MAX_BYTES: what it drains itself
CHUNK_BYTES = 256 * 1024


def read_body() -> bytes:
    """The whole body (not cached: handlers parse it once). Raises RequestEntityTooLarge past MAX_CONTENT_LENGTH."""
    body = request.get_data(cache=False)
    g.body_read = True
    return body


def drain_unread_body(cap: int) -> None:
    """Read and drop the body of a call whose handler did not read it, if it is larger than gunicorn drains."""
    if g.get("body_read"):
        return
    length = request.content_length
    chunked = length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not chunked and (length is None or length <= GUNICORN_DRAIN_BYTES or length > cap):
        return
    stream = request.environ["wsgi.input"]  # not request.stream: that refuses bodies past MAX_CONTENT_LENGTH
    left = cap if chunked else length
    try:
        while left > 0:
            chunk = stream.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
    except Exception:  # a client that went away or stalls: the connection cannot be reused anyway
        log.debug("could not drain an unread request body", exc_info=True)
    g.body_read = True


def parse_json(body: bytes, records: bool = False) -> Any:
    """The JSON value of a body whose text every store can hold (mlops.contract.text); every failure an ApiError.

    `records`: the body is a record or a list of them, so text at fault in the list is named by `index` and field.
    """
    if not body.strip():
        raise ApiError(400, "invalid JSON", "the body is empty; send a JSON object or a list of objects", "(body)")
    try:
        return loads_text(body)
    except RecursionError:
        raise ApiError(400, "invalid JSON", "the body is nested too deeply", "(body)") from None
    except TextError as error:
        path, index = error.path, None
        if records and path and isinstance(path[0], int):
            path, index = path[1:], path[0]
        raise ApiError(422, "invalid text", error.reason, format_path(path), index) from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "invalid JSON", f"the body is not valid JSON: {error}", "(body)") from None


def parse_records(body: bytes, max_records: int) -> tuple[list[Any], bool]:
    """The JSON body as a list of records and whether it was a single object. Every failure is an ApiError."""
    parsed = parse_json(body, records=True)
    if isinstance(parsed, dict):
        return [parsed], True
    if isinstance(parsed, list):
        if not parsed:
            raise ApiError(400, "empty list", "send at least one record", "(body)")
        if len(parsed) > max_records:
            raise ApiError(
                413, "too many records", f"a batch may hold at most {max_records} records, got {len(parsed)}", "(body)"
            )
        return parsed, False
    raise ApiError(
        400, "invalid body", f"expected a JSON object or a list of objects, got {type(parsed).__name__}", "(body)"
    )
