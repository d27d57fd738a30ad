"""Prefect flow `daily_batch_predictions`: score today's account files with the served model.

Thin on purpose: the tasks call `ModelService.from_settings` and `batch.runner.run_batch`, which the CLI and the
tests use directly. The flow fails (after recording every output, the manifest and the rejects list) when a file
was rejected, so a bad input shows in the Prefect UI and in the exit code of whoever waits on it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from batch.runner import BatchSummary, run_batch
from mlops.model import ModelBundle
from mlops.settings import Settings, load_flow_settings

FLOW_NAME = "daily_batch_predictions"


class BatchRejects(RuntimeError):
    """Some files were rejected; everything else was scored and recorded."""


def default_locations(settings: Settings) -> tuple[str, str]:
    return (
        settings.batch_input_uri or f"s3://{settings.s3_bucket}/batch/input",
        settings.batch_output_uri or f"s3://{settings.s3_bucket}/batch/output",
    )


@task(name="load served model", cache_policy=NONE, retries=2, retry_delay_seconds=5)
def load_served_model(settings: Settings) -> ModelBundle:
    from mlops.model_service import ModelService

    service = ModelService.from_settings(settings)
    get_run_logger().info("model %s (%s)", service.run_id, service.source)
    return service.bundle


@task(name="score files", cache_policy=NONE)
def score_files(
    settings: Settings,
    bundle: ModelBundle,
    input_uri: str,
    output_uri: str,
    engine: str,
    workers: int | None,
    aggregates: list[str],
) -> BatchSummary:
    summary = run_batch(
        input_uri,
        output_uri,
        bundle,
        settings=settings,
        engine=engine,  # type: ignore[arg-type]
        workers=workers,
        aggregates=aggregates,
    )
    logger = get_run_logger()
    for reject in summary.rejects:
        logger.warning("rejected %s: %s", reject["input"], reject["reason"])
    logger.info(summary.line())
    return summary


@task(name="score every customer of the online store", cache_policy=NONE)
def score_all_customers(settings: Settings, bundle: ModelBundle, output_uri: str) -> dict[str, Any]:
    from batch.customers import score_customers

    summary = score_customers(bundle, output_uri, settings)
    get_run_logger().info(summary.line())
    return {"run_id": summary.run_id, "rows": summary.rows, "output": summary.output, "snapshots": summary.snapshots}


@flow(name=FLOW_NAME, log_prints=True)
def daily_batch_predictions(
    input_uri: str | None = None,
    output_uri: str | None = None,
    engine: str = "embedded",
    workers: int | None = None,
    aggregates: list[str] | None = None,
    env: str | None = None,
    fail_on_rejects: bool = True,
    settings_overrides: dict[str, Any] | None = None,
    all_customers: bool = False,
) -> dict[str, Any]:
    """Score every new file under `input_uri` (default BATCH_INPUT_URI) into `output_uri`/<run id>/; with
    `all_customers`, every customer of the online store instead (batch by id, no input files).

    Returns the summary's counts; `settings_overrides` (field -> value) win over the environment (tests).
    """
    settings = load_flow_settings(env, settings_overrides)
    default_input, default_output = default_locations(settings)
    bundle = load_served_model(settings)
    if all_customers:
        return score_all_customers(settings, bundle, output_uri or default_output)
    summary = score_files(
        settings, bundle, input_uri or default_input, output_uri or default_output, engine, workers, aggregates or []
    )
    result = {
        "run_id": summary.run_id,
        "scored": summary.scored,
        "skipped": summary.skipped,
        "rejected": summary.rejected,
        "rows": summary.rows,
        "rejects_part": summary.rejects_part,
    }
    if summary.rejects and fail_on_rejects:
        raise BatchRejects(f"{summary.line()}; rejects listed in {summary.rejects_part}")
    return result
