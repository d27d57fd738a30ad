"""Settings whose S3 is moto in process (unit tests of one adapter only; the integration tests use moto's server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moto import mock_aws

from mlops import aws
from mlops.settings import Settings


@contextmanager
def mocked_s3_settings(state_dir: Path, bucket: str, **changes: Any) -> Iterator[Settings]:
    """Settings on `state_dir` with `bucket` created in an in-process S3."""
    with mock_aws():
        settings = Settings(
            _env_file=None,
            state_dir=state_dir,
            aws_endpoint_url=None,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            s3_bucket=bucket,
            **changes,
        )
        aws.client("s3", settings).create_bucket(Bucket=bucket)
        yield settings
