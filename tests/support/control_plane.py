"""The test session's control-plane secrets: integration tests run every server with authentication on.

`pytest_configure` (tests/conftest.py) first removes whatever secrets the calling shell exported (the Makefile
exports the local ones), so every run starts from the same state; the session's servers then get these.
"""

from __future__ import annotations

import os
import secrets

from mlops.local_secrets import LOCAL_SECRETS

WRITER = "mlops-writer"
READER = "mlops-reader"


def session_secrets() -> dict[str, str]:
    return {
        "MLFLOW_ADMIN_PASSWORD": secrets.token_hex(16),
        "MLFLOW_TRACKING_USERNAME": WRITER,
        "MLFLOW_TRACKING_PASSWORD": secrets.token_hex(16),
        "MLFLOW_READER_PASSWORD": secrets.token_hex(16),
        "PREFECT_API_AUTH_STRING": f"mlops:{secrets.token_hex(16)}",
        "DRIFT_SERVICE_KEY": secrets.token_hex(16),
    }


def forget_exported_secrets() -> None:
    for name in [*LOCAL_SECRETS, "PREFECT_SERVER_API_AUTH_STRING", "MLFLOW_READER_USERNAME"]:
        os.environ.pop(name, None)


def cloud_credentials() -> dict[str, str]:
    """What env=cloud settings need besides AWS (unit tests of the cloud rules)."""
    return {
        "mlflow_tracking_username": WRITER,
        "mlflow_tracking_password": "a-real-looking-password",
        "prefect_api_auth_string": "mlops:a-real-looking-password",
        "drift_service_key": "a-real-looking-key",
    }
