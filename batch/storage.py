"""Where batch files live: a local folder or an S3 prefix, behind one small interface.

Scoring code only lists, reads and writes bytes by relative name; it never knows which backend it talks to. Each
listed file carries a *fingerprint* (size+mtime locally, the ETag on S3) so a re-run can tell an unchanged input
from a replaced one without reading it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from mlops.aws import ServiceUnavailable, client, describe_endpoint
from mlops.settings import Settings

DATA_SUFFIXES = (".csv", ".parquet")
S3_CONCURRENCY = 16  # GETs (and PUTs) in flight per worker: a block of small files is fetched at once


@dataclass(frozen=True)
class InputFile:
    """One input file: its name relative to the input root, its full URI and a change fingerprint."""

    name: str
    uri: str
    size: int
    fingerprint: str


class Store(Protocol):
    """A folder-like place: list, read and write files by name relative to its root.

    `concurrency`: how many reads (and writes) of one block the engine keeps in flight: 1 for a local folder (the
    page cache answers at once), more for S3, where each GET waits a round trip the core could spend scoring.
    """

    root: str
    concurrency: int

    def list(self) -> list[InputFile]: ...

    def read(self, name: str) -> bytes: ...

    def write(self, name: str, data: bytes) -> str: ...

    def exists(self, name: str) -> bool: ...

    def list_names(self, folder: str) -> list[str]: ...


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`) with no trailing slash on the prefix."""
    rest = str(uri)[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def is_data_file(name: str) -> bool:
    """Data files only: hidden files and folders (`_manifest`, `.tmp`) are bookkeeping, never input."""
    parts = name.split("/")
    return name.lower().endswith(DATA_SUFFIXES) and not any(p.startswith(("_", ".")) for p in parts)


class LocalStore:
    concurrency = 1

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def list(self) -> list[InputFile]:
        if not self.path.is_dir():
            raise FileNotFoundError(f"input folder {self.path} does not exist")
        found = []
        for file in sorted(self.path.rglob("*")):
            name = file.relative_to(self.path).as_posix()
            if not file.is_file() or not is_data_file(name):
                continue
            stat = file.stat()
            found.append(InputFile(name, str(file), stat.st_size, f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}"))
        return found

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def write(self, name: str, data: bytes) -> str:
        """Atomic: a reader (or a crash) never sees half a file."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(target)
        return str(target)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def list_names(self, folder: str) -> list[str]:
        """Names (relative to the root) of the finished files under `folder`; temporaries are left out."""
        base = self.path / folder
        if not base.is_dir():
            return []
        return sorted(
            f.relative_to(self.path).as_posix() for f in base.rglob("*") if f.is_file() and not f.name.startswith(".")
        )


class S3Store:
    """An S3 prefix through mlops.aws (endpoint override for moto/localstack)."""

    concurrency = S3_CONCURRENCY

    def __init__(self, uri: str, settings: Settings, s3: Any | None = None) -> None:
        self.bucket, self.prefix = split_s3(uri)
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.settings = settings
        # one connection per request in flight (botocore's pool is 10 by default: more threads would wait on it)
        self.s3 = s3 or client("s3", settings, max_pool_connections=S3_CONCURRENCY)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _fail(self, what: str, error: Exception) -> Exception:
        if isinstance(error, EndpointConnectionError | BotoCoreError) and not isinstance(error, ClientError):
            return ServiceUnavailable(
                f"S3 is unreachable while trying to {what} ({describe_endpoint(self.settings)}); "
                "start it or fix AWS_ENDPOINT_URL"
            )
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        if code in ("NoSuchBucket", "NoSuchKey", "404"):
            return FileNotFoundError(f"{what}: not found ({code})")
        return error

    def list(self) -> list[InputFile]:
        found = []
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    name = item["Key"][len(base) :]
                    if is_data_file(name):
                        uri = f"s3://{self.bucket}/{item['Key']}"
                        etag = str(item.get("ETag", "")).strip('"')
                        found.append(InputFile(name, uri, int(item["Size"]), f"size={item['Size']};etag={etag}"))
        except (ClientError, BotoCoreError) as error:
            raise self._fail(f"list {self.root}", error) from error
        return sorted(found, key=lambda f: f.name)

    def read(self, name: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise self._fail(f"read {self.root}/{name}", error) from error

    def write(self, name: str, data: bytes) -> str:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except (ClientError, BotoCoreError) as error:
            raise self._fail(f"write {self.root}/{name}", error) from error
        return f"s3://{self.bucket}/{self._key(name)}"

    def exists(self, name: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(name))
            return True
        except ClientError:
            return False

    def list_names(self, folder: str) -> list[str]:
        base = f"{self._key(folder)}/"
        names = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                names += [item["Key"][len(self._key("")) :] for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as error:
            raise self._fail(f"list {self.root}/{folder}", error) from error
        return sorted(names)


def open_store(uri: str | Path, settings: Settings | None = None) -> Store:
    """A store for a local folder or an `s3://bucket/prefix` URI (S3 needs settings for the endpoint)."""
    if is_s3(str(uri)):
        if settings is None:
            raise ValueError(f"{uri}: an S3 location needs settings (AWS_ENDPOINT_URL, credentials)")
        return S3Store(str(uri), settings)
    return LocalStore(uri)
