"""Where the reference sample comes from: the served model's training reference in the S3 feature store.

The model run's MLflow tag `reference_uri` (set by the training flow) names s3://<bucket>/<dataset>/<hash>/
reference.parquet; without a run id (records that carry none) the data set's LATEST snapshot is used.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from urllib.parse import urlparse

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.feature_store import FeatureStore
from mlops.settings import Settings

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.parquet"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def reference_uri_of_run(settings: Settings, run_id: str) -> str:
    """The run's `reference_uri` tag; a clear error naming MLFLOW_TRACKING_URI when MLflow is down."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mlops.registry import check_mlflow

    check_mlflow(settings.mlflow_tracking_uri)
    try:
        run = MlflowClient(settings.mlflow_tracking_uri).get_run(run_id)
    except MlflowException as error:
        raise LookupError(f"MLflow run {run_id} not found at MLFLOW_TRACKING_URI: {error}") from error
    uri = run.data.tags.get("reference_uri")
    if not uri:
        raise LookupError(f"MLflow run {run_id} has no 'reference_uri' tag (trained before tags existed?)")
    return uri


class ReferenceLoader:
    """Loads reference frames from S3; `uri_of_run` is injectable so tests need no MLflow."""

    def __init__(self, settings: Settings, uri_of_run: Callable[[Settings, str], str] = reference_uri_of_run) -> None:
        self.settings = settings
        self.uri_of_run = uri_of_run

    def uri_for(self, dataset: str, run_id: str | None) -> str:
        if run_id:
            return self.uri_of_run(self.settings, run_id)
        store = FeatureStore(aws.client("s3", self.settings), self.settings)
        return store.latest(dataset).uri(REFERENCE_FILE)

    def load(self, dataset: str, run_id: str | None) -> tuple[pd.DataFrame, str]:
        """(frame, its URI). Raises ServiceUnavailable / LookupError / FileNotFoundError with a clear message."""
        uri = self.uri_for(dataset, run_id)
        bucket, key = parse_s3_uri(uri)
        s3 = aws.client("s3", self.settings)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            raise FileNotFoundError(f"reference {uri} not found: {error}") from error
        except BotoCoreError as error:
            raise ServiceUnavailable(
                f"S3 is unreachable reading {uri} ({aws.describe_endpoint(self.settings)}): {error}"
            ) from error
        frame = pd.read_parquet(io.BytesIO(body))
        log.info("reference %s loaded: %d rows", uri, len(frame))
        return frame, uri
