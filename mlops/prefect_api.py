"""Prefect's API as every process of ours reaches it: checked first (a clear error naming PREFECT_API_URL), then
the Prefect client pointed at it for the work that follows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
    from prefect.settings import PREFECT_API_URL, temporary_settings

    check_prefect(settings.prefect_api_url)
    with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
        yield
