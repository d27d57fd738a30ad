"""Who may call the API: the `x-api-key` check and the per-key rate limit.

Why here and not in Flask routes: the check runs in `before_request`, before the body is read, so a refused call
costs nothing and can never reach the model or the prediction log.

- A key is required when API_KEY is set, and always with env=cloud (the API refuses to start there without one).
- Keys are compared with `hmac.compare_digest` (constant time: the answer time does not leak how much matched).
- No key: 401. Wrong key: 403. Over RATE_LIMIT (e.g. "600/minute") for one key: 429 with `Retry-After`.
- /health, /metrics and /openapi.json stay open (probes, Prometheus, clients reading the schema).

Where the rate limit counts (RATE_LIMIT_STORAGE_URI): `memory://` (default, nothing to run) counts in each gunicorn
worker, so with N workers a key gets up to N x RATE_LIMIT when its connections spread over the workers;
`redis://host:port` shares one count between workers (and API servers): exact. If Redis goes away, the workers fall
back to counting in memory (flask-limiter's in-memory fallback) rather than refusing or failing requests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import TYPE_CHECKING

from mlops.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from flask import Flask
    from flask_limiter import Limiter

API_KEY_HEADER = "x-api-key"
API_KEY_ENVIRON = "HTTP_X_API_KEY"  # the header as WSGI names it
OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"})


class AccessDenied(Exception):
    """A refused call: 401 (no key), 403 (wrong key); the reason says which header to send."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def check_startup(settings: Settings) -> None:
    """Refuse to serve a cloud API without a key, and a malformed RATE_LIMIT, before any worker starts."""
    if settings.env == "cloud" and not settings.api_key:
        raise ConfigurationError(
            "env=cloud requires an API key: set API_KEY in the environment (never in the repo); "
            "clients then send it in the x-api-key header"
        )
    if settings.rate_limit:
        parse_rate_limit(settings.rate_limit)
        check_storage_uri(settings.rate_limit_storage_uri)


STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+unix")  # the redis client is installed; nothing else is


def check_storage_uri(uri: str) -> None:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in STORAGE_SCHEMES:
        raise ConfigurationError(
            f"RATE_LIMIT_STORAGE_URI={uri!r}: expected memory:// or redis://host:port "
            f"(schemes: {', '.join(STORAGE_SCHEMES)})"
        )


def parse_rate_limit(text: str) -> list[object]:
    """RATE_LIMIT as flask-limiter's limits, or a ConfigurationError naming the setting."""
    from limits import parse_many

    try:
        parsed = parse_many(text)
    except ValueError as error:
        raise ConfigurationError(f"RATE_LIMIT={text!r} is not a rate such as '600/minute': {error}") from None
    if not parsed:
        raise ConfigurationError(f"RATE_LIMIT={text!r} is not a rate such as '600/minute'")
    return list(parsed)


class AccessPolicy:
    """The key check; `required` is False only when no key is configured outside the cloud."""

    def __init__(self, settings: Settings) -> None:
        check_startup(settings)
        self._expected = settings.api_key.encode() if settings.api_key else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def check(self, path: str, given: str | None) -> None:
        """Raise AccessDenied unless `path` is open or `given` is the key."""
        if path in OPEN_PATHS or self._expected is None:
            return
        if not given:
            raise AccessDenied(401, "missing API key", f"send the API key in the {API_KEY_HEADER} header")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._expected):
            raise AccessDenied(403, "invalid API key", f"the {API_KEY_HEADER} header does not hold a valid key")

    def admin_allowed(self) -> bool:
        """Admin endpoints exist only behind a key: without API_KEY nobody may reload the model over HTTP."""
        return self.required


def rate_limit_key() -> str:
    """The caller for the rate limit: a digest of its key (raw keys never sit in the limiter), else its address."""
    from flask import request

    given = request.headers.get(API_KEY_HEADER)
    if given:
        return "key:" + hashlib.sha256(given.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")


class _NameTheStorage(logging.Filter):
    """flask-limiter's "storage unreachable" warning, completed with the setting to fix (credentials hidden)."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = re.sub(r"//[^@/]*@", "//***@", uri)

    def filter(self, record: logging.LogRecord) -> bool:
        if "storage unreachable" in record.getMessage():
            record.msg = (
                f"rate limit storage (Redis) unreachable at RATE_LIMIT_STORAGE_URI={self.uri}: each worker counts "
                "in memory until it is back"
            )
            record.args = ()
        return True


def install_rate_limit(app: Flask, settings: Settings) -> Limiter | None:
    """flask-limiter on every non-open path at RATE_LIMIT per key; None when RATE_LIMIT is empty.

    Install it after the key check's `before_request`, so a refused key is never counted nor limited.
    """
    if not settings.rate_limit:
        return None
    from flask import request
    from flask_limiter import Limiter

    parse_rate_limit(settings.rate_limit)
    check_storage_uri(settings.rate_limit_storage_uri)
    shared = not settings.rate_limit_storage_uri.startswith("memory://")
    limiter_log = logging.getLogger("flask-limiter")
    if shared and not any(isinstance(f, _NameTheStorage) for f in limiter_log.filters):  # one per process
        limiter_log.addFilter(_NameTheStorage(settings.rate_limit_storage_uri))
    return Limiter(
        rate_limit_key,
        app=app,
        default_limits=[settings.rate_limit],
        default_limits_exempt_when=lambda: request.path in OPEN_PATHS,
        storage_uri=settings.rate_limit_storage_uri,
        in_memory_fallback_enabled=shared,  # Redis gone: count per worker instead of failing requests
        swallow_errors=shared,
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1} if shared else {},
        headers_enabled=True,
        strategy="fixed-window",
    )
