"""Who may call the control planes: MLflow users, Prefect's auth string, the drift service's key, local secrets.

Every control plane refuses anonymous callers once its secret is set, and `env=cloud` refuses to start without them
(mlops.settings). The identities:

- MLflow: the server runs its basic-auth app with the admin MLFLOW_ADMIN_USERNAME/_PASSWORD (mlops/mlflow_server.py);
  clients send MLFLOW_TRACKING_USERNAME/_PASSWORD (MLflow's own variables): the platform's writer (flows, make
  train/promote), or the reader (MLFLOW_READER_*) that the runtime gives the services that only read.
- Prefect: the server requires PREFECT_SERVER_API_AUTH_STRING, set to PREFECT_API_AUTH_STRING, which every client
  sends (Prefect's own client setting; `prefect_auth` for callers using requests).
- The drift service: DRIFT_SERVICE_KEY on its write endpoints; its clients send it in `x-service-key`.
- Redis and MongoDB (compose): a password / a root user; clients carry them in ONLINE_STORE_URI / PREDICTION_LOG_URI.

Locally the Makefile makes random secrets once (mlops/local_secrets.py) and exports them, so `make up` and the
compose stacks run authenticated on a laptop too; cloud secrets come from the environment (GitHub secrets) only.
"""

from __future__ import annotations

import hmac

import requests

from mlops.settings import Settings

SERVICE_KEY_HEADER = "x-service-key"


def prefect_auth(settings: Settings) -> tuple[str, str] | None:
    """Basic-auth pair for Prefect's REST API from PREFECT_API_AUTH_STRING (user:password), for callers using
    requests directly; Prefect's own client sends it itself."""
    if not settings.prefect_api_auth_string:
        return None
    user, _, password = settings.prefect_api_auth_string.partition(":")
    return user, password


def service_key_ok(settings: Settings, given: str | None) -> bool:
    """The drift service's write check: open without DRIFT_SERVICE_KEY, else the same key (timing-safe)."""
    if not settings.drift_service_key:
        return True
    return given is not None and hmac.compare_digest(given.encode(), settings.drift_service_key.encode())


def service_headers(settings: Settings) -> dict[str, str]:
    return {SERVICE_KEY_HEADER: settings.drift_service_key} if settings.drift_service_key else {}


# ------------------------------------------------------------------------------------------------- MLflow users
class MlflowUsersError(RuntimeError):
    """The MLflow users could not be made; the message names the setting or the server's answer."""


def _call(base: str, admin: tuple[str, str], method: str, path: str, **kwargs: object) -> requests.Response:
    try:
        return requests.request(method, f"{base.rstrip('/')}{path}", auth=admin, timeout=10, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as error:
        raise MlflowUsersError(f"MLflow unreachable at {base}: {error}") from error


def ensure_mlflow_users(settings: Settings, base_url: str) -> list[str]:
    """The writer (MLFLOW_TRACKING_USERNAME: MANAGE on every experiment and registered model, present and future)
    and the reader (default permission READ) exist with the passwords the settings give; returns what changed.
    Idempotent: run at every server start, so rotating a password in the environment rotates it in MLflow."""
    if not settings.mlflow_admin_password:
        raise MlflowUsersError("MLFLOW_ADMIN_PASSWORD is not set: MLflow runs without users")
    admin = (settings.mlflow_admin_username, settings.mlflow_admin_password)
    wanted = []
    if settings.mlflow_tracking_username and settings.mlflow_tracking_password:
        wanted.append((settings.mlflow_tracking_username, settings.mlflow_tracking_password, True))
    if settings.mlflow_reader_password:
        wanted.append((settings.mlflow_reader_username, settings.mlflow_reader_password, False))
    done = []
    for username, password, writer in wanted:
        if username == settings.mlflow_admin_username:
            raise MlflowUsersError(f"{username!r} is the MLflow admin: give the platform's users their own names")
        found = _call(base_url, admin, "GET", "/api/2.0/mlflow/users/get", params={"username": username})
        if found.status_code == 401:
            raise MlflowUsersError(
                "MLflow refused the admin's credentials (401): MLFLOW_ADMIN_PASSWORD differs from the one the auth "
                "database was created with; set the old one, or reset MLflow's state"
            )
        if found.status_code == 404:
            answer = _call(
                base_url,
                admin,
                "POST",
                "/api/2.0/mlflow/users/create",
                json={"username": username, "password": password},
            )
            done.append(f"created {username}")
        else:
            answer = _call(
                base_url,
                admin,
                "PATCH",
                "/api/2.0/mlflow/users/update-password",
                json={"username": username, "password": password},
            )
        if answer.status_code >= 400:
            raise MlflowUsersError(
                f"MLflow refused to set up user {username}: {answer.status_code} {answer.text[:300]}"
            )
        if writer:
            for resource in ("experiment", "registered_model"):
                grant = _call(
                    base_url,
                    admin,
                    "POST",
                    "/api/3.0/mlflow/users/permissions/grant",
                    json={"username": username, "resource_type": resource, "resource_id": "*", "permission": "MANAGE"},
                )
                if grant.status_code >= 400 and "RESOURCE_ALREADY_EXISTS" not in grant.text:
                    raise MlflowUsersError(
                        f"MLflow refused to let {username} manage every {resource}: {grant.status_code} "
                        f"{grant.text[:300]}"
                    )
    return done
