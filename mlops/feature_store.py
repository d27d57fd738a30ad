"""The S3 feature store: clean data as Parquet under a key that contains the data's content hash.

Layout: s3://<bucket>/<spec name>/<hash>/train.parquet, .../reference.parquet, .../spec.json,
and s3://<bucket>/<spec name>/LATEST holding the newest hash, which training reads by default.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from mlops.aws import ServiceUnavailable, describe_endpoint
from mlops.settings import Settings


@dataclass(frozen=True)
class Snapshot:
    """One versioned data set in the store."""

    bucket: str
    dataset: str
    data_hash: str

    @property
    def prefix(self) -> str:
        return f"{self.dataset}/{self.data_hash}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}/{name}"


class FeatureStore:
    def __init__(self, s3: Any, settings: Settings) -> None:
        self.s3 = s3
        self.settings = settings
        self.bucket = settings.s3_bucket

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except EndpointConnectionError as error:
            raise ServiceUnavailable(
                f"S3 is unreachable while trying to {what} ({describe_endpoint(self.settings)}); "
                "start it (make setup-model-registry) or fix AWS_ENDPOINT_URL"
            ) from error
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                raise FileNotFoundError(
                    f"s3://{self.bucket}/{kwargs.get('Key', '')} not found ({code}); run `make init_aws` first"
                ) from error
            raise
        except BotoCoreError as error:
            raise ServiceUnavailable(f"S3 call failed ({describe_endpoint(self.settings)}): {error}") from error

    def put_frame(self, snapshot: Snapshot, name: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self._call("write", self.s3.put_object, Bucket=self.bucket, Key=snapshot.key(name), Body=buffer.getvalue())
        return snapshot.uri(name)

    def get_frame(self, snapshot: Snapshot, name: str) -> pd.DataFrame:
        body = self._call("read", self.s3.get_object, Bucket=self.bucket, Key=snapshot.key(name))["Body"].read()
        return pd.read_parquet(io.BytesIO(body))

    def put_text(self, key: str, text: str) -> None:
        self._call("write", self.s3.put_object, Bucket=self.bucket, Key=key, Body=text.encode())

    def get_text(self, key: str) -> str:
        return self._call("read", self.s3.get_object, Bucket=self.bucket, Key=key)["Body"].read().decode()

    def exists(self, key: str) -> bool:
        try:
            self._call("check", self.s3.head_object, Bucket=self.bucket, Key=key)
            return True
        except FileNotFoundError:
            return False
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def set_latest(self, snapshot: Snapshot, meta: dict[str, Any]) -> None:
        self.put_text(snapshot.key("meta.json"), json.dumps(meta, indent=2, sort_keys=True))
        self.put_text(f"{snapshot.dataset}/LATEST", snapshot.data_hash)

    def latest(self, dataset: str) -> Snapshot:
        data_hash = self.get_text(f"{dataset}/LATEST").strip()
        return Snapshot(self.bucket, dataset, data_hash)

    def resolve(self, dataset: str, data_hash: str | None = None) -> Snapshot:
        return Snapshot(self.bucket, dataset, data_hash) if data_hash else self.latest(dataset)
