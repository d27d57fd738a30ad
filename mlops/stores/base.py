"""What every store shares: the one error a dead backend raises, and credentials kept out of messages."""

from __future__ import annotations


class StoreUnavailable(RuntimeError):
    """A store cannot be written or read right now; the message names the setting that points at it."""


def redact(uri: str) -> str:
    """Hide a password in a scheme://user:password@host URI before it reaches a log or an answer."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return uri


def unavailable(
    what: str, setting: str, uri: str, error: BaseException, kind: type[StoreUnavailable] = StoreUnavailable
) -> StoreUnavailable:
    """The error of a dead backend, naming the store, the setting and the cause (never the password)."""
    return kind(f"{what} unavailable at {setting}={redact(uri)} ({type(error).__name__}: {error})")
