"""Prefect flow `materialize_online_store`: the S3 feature store's newest snapshot -> the online store.

A thin wrapper over mlops.materialize (which `make materialize` runs directly); served on an interval
(MATERIALIZE_INTERVAL_HOURS) by the batch deployment process, beside the daily batch that scores every customer.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from mlops.materialize import describe, materialize
from mlops.settings import load_flow_settings
from mlops.spec import FeatureSpec

FLOW_NAME = "materialize_online_store"


@task(name="materialize", cache_policy=NONE, retries=2, retry_delay_seconds=10)
def materialize_task(env: str | None, data_hash: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    settings = load_flow_settings(env, overrides)
    return materialize(settings, FeatureSpec.load(settings.feature_spec), data_hash)


@flow(name=FLOW_NAME, log_prints=True)
def materialize_online_store(
    env: str | None = None, data_hash: str | None = None, settings_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Latest feature row of every customer into ONLINE_STORE_URI; returns rows, changed rows and the snapshot."""
    result = materialize_task(env, data_hash, settings_overrides or {})
    get_run_logger().info(describe(result))
    return result
