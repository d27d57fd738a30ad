"""The control planes' credentials, a part of `mlops.settings.Settings` (which inherits them): secrets, read from
the environment only (mlops/control_plane.py uses them; docs/security.md says who holds which)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# the credentials a process passes on to the programs it starts (native/runtime.py), each once
CREDENTIAL_FIELDS = (
    "mlflow_admin_password",
    "mlflow_tracking_username",
    "mlflow_tracking_password",
    "mlflow_reader_password",
    "prefect_api_auth_string",
    "drift_service_key",
)


class ControlPlaneSettings(BaseModel):
    mlflow_admin_username: str = Field(default="admin", description="MLflow server's admin user (basic-auth app)")
    mlflow_admin_password: str | None = Field(
        default=None, description="MLflow admin password; set: the server runs its basic-auth app (env=cloud: required)"
    )
    mlflow_tracking_username: str | None = Field(
        default=None, description="this process's MLflow user (the platform's writer unless its runtime says reader)"
    )
    mlflow_tracking_password: str | None = Field(default=None, description="password of MLFLOW_TRACKING_USERNAME")
    mlflow_reader_username: str = Field(
        default="mlops-reader", description="read-only MLflow user of the services that only read the registry"
    )
    mlflow_reader_password: str | None = Field(default=None, description="password of MLFLOW_READER_USERNAME")
    prefect_api_auth_string: str | None = Field(
        default=None, description="user:password Prefect's server requires and every client sends (env=cloud: required)"
    )
    drift_service_key: str | None = Field(
        default=None, description="key the drift service requires on its write endpoints (x-service-key)"
    )
