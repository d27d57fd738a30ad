"""boto3 clients for S3 and Kinesis, pointed at the emulator or at real AWS by settings alone."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from mlops.settings import Settings

EMULATOR_CREDENTIAL = "test"  # moto / localstack accept any credentials


class ServiceUnavailable(RuntimeError):
    """A dependency cannot be reached; the message names the service and the setting that points at it."""


def client(service: str, settings: Settings, **config: Any) -> Any:
    """A boto3 client; with AWS_ENDPOINT_URL set, every call goes to the emulator with dummy credentials."""
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        "config": Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=20, **config),
    }
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        kwargs["aws_access_key_id"] = settings.aws_access_key_id or EMULATOR_CREDENTIAL
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key or EMULATOR_CREDENTIAL
    elif settings.aws_access_key_id and settings.aws_secret_access_key:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key
    return boto3.client(service, **kwargs)


def list_objects(s3: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every object under `prefix` (all pages of list_objects_v2)."""
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(page.get("Contents", []))
    return objects


def describe_endpoint(settings: Settings) -> str:
    return f"AWS_ENDPOINT_URL={settings.aws_endpoint_url}" if settings.aws_endpoint_url else "real AWS"


def ensure_bucket(s3: Any, bucket: str, region: str) -> bool:
    """Create the bucket if missing; True if it was created."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return False
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    return True


def ensure_stream(kinesis: Any, name: str, shards: int) -> bool:
    """Create the Kinesis stream if missing and wait until it is ACTIVE; True if it was created."""
    try:
        kinesis.describe_stream_summary(StreamName=name)
        created = False
    except kinesis.exceptions.ResourceNotFoundException:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        created = True
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return created
