"""Local control-plane secrets, made once: `python3 -m mlops.local_secrets PATH` (the Makefile runs it for env=local).

Standard library only: the Makefile reads the file before the virtual environment may exist. Each line is
`NAME ?= value`, Make's "unless already set" assignment, so a value in the environment always wins; the Makefile
exports every name, so `make up`, the compose stacks and every `make` command run authenticated on a laptop too.
Existing values are kept (a restart never changes a password a database already holds); missing ones are added.
The file is mode 0600 under STATE_DIR (ignored by git). env=cloud never uses it: cloud secrets come from the
environment (GitHub secrets) and mlops.settings refuses to start without them.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

# name -> template ("token": 32 hex characters: URL-, shell- and Make-safe, so it fits in a redis:// URI)
LOCAL_SECRETS: dict[str, str] = {
    "MLFLOW_ADMIN_PASSWORD": "token",
    "MLFLOW_TRACKING_USERNAME": "mlops-writer",
    "MLFLOW_TRACKING_PASSWORD": "token",
    "MLFLOW_READER_PASSWORD": "token",
    "PREFECT_API_AUTH_STRING": "mlops:token",
    "DRIFT_SERVICE_KEY": "token",
    "REDIS_PASSWORD": "token",
    "MONGO_PASSWORD": "token",
    "GRAFANA_ADMIN_PASSWORD": "token",
}


def read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("?=")
            if sep and name.strip() in LOCAL_SECRETS:
                values[name.strip()] = value.strip()
    return values


def ensure(path: Path) -> dict[str, str]:
    """Every secret of LOCAL_SECRETS in `path`, the existing ones unchanged."""
    values = read(path)
    for name, template in LOCAL_SECRETS.items():
        values.setdefault(name, template.replace("token", secrets.token_hex(16)))
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text("".join(f"{name} ?= {value}\n" for name, value in values.items()), encoding="utf-8")
    scratch.chmod(0o600)
    os.replace(scratch, path)
    return values


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python3 -m mlops.local_secrets STATE_DIR/secrets.env", file=sys.stderr)
        return 2
    ensure(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
