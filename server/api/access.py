"""Who may call the API: the `x-api-key` check and the per-key rate limit.

Why here and not in Flask routes: the check runs in `before_request`, before the body is read, so a refused call
costs nothing and can never reach the model or the prediction log.

- A key is required when API_KEY or API_KEYS is set, and always with env=cloud (the API refuses to start there
  without one).
- Keys have scopes: `predict` (/predict, V2, /customers), `outcomes` (/outcomes: they are the promotion gate's
  evidence, so a client that only scores must not be able to steer it), `admin` (/admin/*). API_KEY holds all
  three; API_KEYS gives others, `key:scope+scope` comma-separated.
- Keys are compared with `hmac.compare_digest` (constant time: the answer time does not leak how much matched).
- No key: 401. Wrong key: 403. A key without the path's scope: 403 naming the scope. Over RATE_LIMIT (e.g.
  "600/minute") for one key: 429 with `Retry-After`.
- Failed authentications are limited per client address (AUTH_FAILURE_LIMIT, in RATE_LIMIT_STORAGE_URI): past it,
  429 before any key is compared, so guessing costs time; counted in `predict_api_auth_failures_total{reason}`.
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
from typing import TYPE_CHECKING, Any

from mlops.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from flask import Flask
    from flask_limiter import Limiter

API_KEY_HEADER = "x-api-key"
API_KEY_ENVIRON = "HTTP_X_API_KEY"  # the header as WSGI names it
OPEN_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"})


SCOPES = ("predict", "outcomes", "admin")


class AccessDenied(Exception):
    """A refused call: 401 (no key), 403 (wrong key, or a key without the scope), 429 (too many failures)."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def scope_of(path: str) -> str:
    """The scope a path needs (open paths are never asked)."""
    if path.startswith("/admin/"):
        return "admin"
    if path == "/outcomes" or path.startswith("/outcomes/"):
        return "outcomes"
    return "predict"


def parse_keys(settings: Settings) -> list[tuple[bytes, frozenset[str]]]:
    """API_KEY (every scope) and API_KEYS (`key:scope+scope,...`) as (key, scopes); a ConfigurationError names the
    setting for a malformed entry (the key itself is never echoed)."""
    keys: list[tuple[bytes, frozenset[str]]] = []
    if settings.api_key:
        keys.append((settings.api_key.encode(), frozenset(SCOPES)))
    for i, entry in enumerate((settings.api_keys or "").split(",")):
        if not entry.strip():
            continue
        if ":" not in entry:  # a key without its scopes: say so without echoing the key
            raise ConfigurationError(f"API_KEYS entry {i + 1}: expected key:scope[+scope]; no scope given")
        key, _, scopes = entry.strip().rpartition(":")
        named = frozenset(s.strip() for s in scopes.split("+") if s.strip())
        unknown = sorted(named - set(SCOPES))
        if not key or not named or unknown:
            raise ConfigurationError(
                f"API_KEYS entry {i + 1}: expected key:scope[+scope] with scopes {', '.join(SCOPES)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        keys.append((key.encode(), named))
    return keys


def check_startup(settings: Settings) -> None:
    """Refuse to serve a cloud API without a key, and a malformed RATE_LIMIT, before any worker starts."""
    if settings.env == "cloud" and not parse_keys(settings):
        raise ConfigurationError(
            "env=cloud requires an API key: set API_KEY (or scoped API_KEYS) in the environment (never in the "
            "repo); clients then send it in the x-api-key header"
        )
    parse_keys(settings)
    parse_rate_limit(settings.auth_failure_limit, "AUTH_FAILURE_LIMIT")
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


def parse_rate_limit(text: str, setting: str = "RATE_LIMIT") -> list[object]:
    """A rate as the `limits` package reads it, or a ConfigurationError naming the setting."""
    from limits import parse_many

    try:
        parsed = parse_many(text)
    except ValueError as error:
        raise ConfigurationError(f"{setting}={text!r} is not a rate such as '600/minute': {error}") from None
    if not parsed:
        raise ConfigurationError(f"{setting}={text!r} is not a rate such as '600/minute'")
    return list(parsed)


class AccessPolicy:
    """The key check; `required` is False only when no key is configured outside the cloud."""

    def __init__(self, settings: Settings) -> None:
        check_startup(settings)
        self._keys = parse_keys(settings)
        self._failures = FailedAuthentications(settings) if self._keys else None

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def check(self, path: str, given: str | None, address: str = "unknown") -> None:
        """Raise AccessDenied unless `path` is open or `given` is a key with the path's scope."""
        if path in OPEN_PATHS or not self._keys:
            return
        assert self._failures is not None
        self._failures.refuse_if_over(address)
        if not given:
            self._failures.count(address, "missing")
            raise AccessDenied(401, "missing API key", f"send the API key in the {API_KEY_HEADER} header")
        raw = given.encode("utf-8", "surrogateescape")
        scopes: frozenset[str] | None = None
        for key, key_scopes in self._keys:  # every key compared: the time does not say which one came close
            if hmac.compare_digest(raw, key):
                scopes = key_scopes
        if scopes is None:
            self._failures.count(address, "invalid")
            raise AccessDenied(403, "invalid API key", f"the {API_KEY_HEADER} header does not hold a valid key")
        needed = scope_of(path)
        if needed not in scopes:
            self._failures.count(address, "scope")
            raise AccessDenied(
                403,
                "insufficient scope",
                f"this key may not call {path}: it needs the '{needed}' scope (it has {', '.join(sorted(scopes))})",
            )

    def admin_allowed(self) -> bool:
        """Admin endpoints exist only behind a key with the admin scope: without one nobody may reload over HTTP."""
        return any("admin" in scopes for _, scopes in self._keys)


class FailedAuthentications:
    """Failed authentications per client address, in RATE_LIMIT_STORAGE_URI (shared when that is Redis): past
    AUTH_FAILURE_LIMIT an address gets 429 until its window passes, whatever key it sends.

    A moving window, not a fixed one: a fixed window resets at each boundary, so a guesser timing the clock got twice
    the limit across it (and a test's burst was let through again mid-run once)."""

    def __init__(self, settings: Settings) -> None:
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        check_storage_uri(settings.rate_limit_storage_uri)
        self.limit = parse(settings.auth_failure_limit)
        self.text = settings.auth_failure_limit
        options = {} if settings.rate_limit_storage_uri.startswith("memory://") else {"socket_timeout": 1}
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri, **options))

    def refuse_if_over(self, address: str) -> None:
        try:
            allowed = self.limiter.test(self.limit, "auth-failures", address)
        except Exception:  # the shared storage is down: fail open on counting, never on the key check itself
            return
        if not allowed:
            _auth_metric().labels(reason="limited").inc()
            raise AccessDenied(
                429,
                "too many failed authentications",
                f"more than {self.text} failed authentications from this address; wait and send a valid key",
            )

    def count(self, address: str, reason: str) -> None:
        _auth_metric().labels(reason=reason).inc()
        try:
            self.limiter.hit(self.limit, "auth-failures", address)
        except Exception:
            logging.getLogger(__name__).warning("cannot count a failed authentication (RATE_LIMIT_STORAGE_URI)")


def _auth_metric() -> Any:
    from server.api.metrics import api_metrics

    return api_metrics().auth_failures


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
