"""Prefect's API as every process of ours reaches it: checked first (a clear error naming PREFECT_API_URL), then
the Prefect client pointed at it, with its auth string, for the work that follows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import requests

from mlops.aws import ServiceUnavailable
from mlops.settings import Settings


def check_prefect(api_url: str) -> None:
    try:
        requests.get(f"{api_url.rstrip('/')}/health", timeout=5).raise_for_status()
    except requests.RequestException as error:
        raise ServiceUnavailable(
            f"Prefect is unreachable at PREFECT_API_URL={api_url} ({type(error).__name__}); "
            "start it (make setup-model-registry) or fix PREFECT_API_URL"
        ) from error


@contextlib.contextmanager
def prefect_at(settings: Settings) -> Iterator[None]:
    """Check PREFECT_API_URL answers, then point Prefect's client at it for the block."""
    from prefect.settings import temporary_settings

    check_prefect(settings.prefect_api_url)
    with temporary_settings(client_settings(settings)):
        yield


def client_settings(settings: Settings) -> dict[Any, str]:
    """Prefect's client settings for our server: its URL and, when it requires one, the auth string (Prefect reads
    its own PREFECT_API_AUTH_STRING at import only; a value from .env.<env> reaches it here)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    chosen: dict[Any, str] = {PREFECT_API_URL: settings.prefect_api_url}
    if settings.prefect_api_auth_string:
        chosen[PREFECT_API_AUTH_STRING] = settings.prefect_api_auth_string
    return chosen
