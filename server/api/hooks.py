"""What runs around every request: the request id, the key check, the rate limit, timing and request metrics.

Every response carries `X-Request-ID` (the client's, if it sent a sane one, else a new time-ordered id). The key is
checked before the rate limiter and before the body is read, so a refused call costs nothing. A body the handler
left unread is drained before the answer (server.api.body), so the keep-alive connection stays usable.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request

from mlops.outcomes import SANE_REQUEST_ID
from mlops.settings import Settings
from mlops.stores.ids import new_id
from server.api.access import API_KEY_ENVIRON, AccessPolicy, install_rate_limit
from server.api.body import drain_unread_body
from server.api.metrics import api_metrics

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # the header as WSGI names it


def install_hooks(app: Flask, settings: Settings, access: AccessPolicy) -> None:
    metrics = api_metrics()

    @app.before_request
    def start() -> None:
        # the WSGI environ and the request's own `g`, each fetched once: every `request.x` / `g.x` goes through a
        # context-local proxy, and headers by name through a case-folding lookup
        environ = request.environ
        ours = g._get_current_object()
        ours.started = time.perf_counter()
        given = environ.get(REQUEST_ID_ENVIRON, "")
        ours.request_id_sent = bool(given)  # a V2 request's own id counts only when no header came
        ours.request_id = given if SANE_REQUEST_ID.match(given) else new_id()
        # before the limiter and the body: a refused key costs nothing; failures are limited per address
        access.check(request.path, environ.get(API_KEY_ENVIRON), request.remote_addr or "unknown")

    install_rate_limit(app, settings)  # its before_request runs after `start`

    by_endpoint: dict[tuple[str, int], tuple[Any, Any]] = {}  # the metrics' label children, made once each

    @app.after_request
    def finish(response: Response) -> Response:
        ours = g._get_current_object()
        response.headers[REQUEST_ID_HEADER] = getattr(ours, "request_id", None) or new_id()
        if not getattr(ours, "body_read", False):
            drain_unread_body(cap=4 * settings.max_body_bytes)
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "(unmatched)"
        key = (endpoint, response.status_code)
        children = by_endpoint.get(key)
        if children is None:  # routes and statuses are few: this stays small
            children = by_endpoint[key] = (
                metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)),
                metrics.latency.labels(endpoint=endpoint),
            )
        children[0].inc()
        started = getattr(ours, "started", None)
        if started is not None:
            children[1].observe(time.perf_counter() - started)
        return response
