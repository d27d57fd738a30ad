"""Every answer that is not a success, in one JSON shape: `{"error", "field", "reason"}` (plus `index` in a batch).

Bad input is a 4xx naming the field; a refused key a 401/403 naming the header; a true bug a JSON 500 without a stack
trace (the log has it under the request id, and `ApiState.internal_errors` counts it: tests assert bad inputs never
get there).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlops.contract import RecordError
from server.api.access import AccessDenied
from server.scoring import ModelNotLoaded

if TYPE_CHECKING:
    from server.api.state import ApiState

log = logging.getLogger(__name__)

Answer = tuple[dict[str, Any], int]


class ApiError(Exception):
    """A client error with the HTTP status, the field at fault (or None) and the reason."""

    def __init__(self, status: int, error: str, reason: str, field: str | None = None, index: int | None = None):
        super().__init__(reason)
        self.status, self.error, self.reason, self.field, self.index = status, error, reason, field, index

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


def invalid_record(error: RecordError) -> ApiError:
    return ApiError(422, "invalid record", error.reason, error.field, error.index)


def not_loaded(error: ModelNotLoaded) -> ApiError:
    return ApiError(503, "model not loaded", str(error), None)


def install_error_handlers(app: Flask, state: ApiState, max_body_bytes: int) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Answer:
        return error.body(), error.status

    @app.errorhandler(ModelNotLoaded)
    def model_not_loaded(error: ModelNotLoaded) -> Answer:
        return not_loaded(error).body(), 503

    @app.errorhandler(AccessDenied)
    def access_denied(error: AccessDenied) -> tuple[dict[str, Any], int, dict[str, str]]:
        headers = {"WWW-Authenticate": 'ApiKey header="x-api-key"'} if error.status == 401 else {}
        if error.status == 429:
            headers["Retry-After"] = "60"
        return {"error": error.error, "field": "x-api-key", "reason": error.reason}, error.status, headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Answer:
        reason = f"the body may hold at most {max_body_bytes} bytes"
        return ApiError(413, "body too large", reason, "(body)").body(), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Answer:
        status = error.code or 500
        if status == 429:  # flask-limiter; it adds Retry-After and X-RateLimit-* after the request
            reason = f"rate limit of {error.description} per API key exceeded; retry after the Retry-After seconds"
            return {"error": "too many requests", "field": "x-api-key", "reason": reason}, 429
        return {"error": error.name.lower(), "field": None, "reason": error.description}, status

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Answer:
        state.internal_errors += 1
        log.exception(
            "unexpected error answering %s %s (request id %s)", request.method, request.path, g.get("request_id")
        )
        return {
            "error": "internal error",
            "field": None,
            "reason": f"unexpected server error; the server log has the details under request id {g.get('request_id')}",
        }, 500
