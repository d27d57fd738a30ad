"""check-jsonschema with its vendored schemas (compose spec, GitHub workflows), offline."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.compose import (
    CHECK_JSONSCHEMA,
)


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    # Any attempt to reach the network fails fast: validation must use the vendored schemas only.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    assert CHECK_JSONSCHEMA.exists(), f"{CHECK_JSONSCHEMA} missing: run `uv sync --frozen --all-extras`"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        env=_offline_env(),
        timeout=120,
    )
