"""`python -m mlops.mlflow_server [mlflow server options]`: MLflow's server, authenticated when it has an admin.

The one way the platform starts MLflow (supervisord natively, the compose service, the tests' servers). With
MLFLOW_ADMIN_PASSWORD set it runs MLflow's basic-auth app (`--app-name basic-auth`, its users in
`--auth-database-uri`, default sqlite beside the state), then makes the platform's users once the server answers
(mlops.control_plane.ensure_mlflow_users): the writer and the reader. Without it, env=local runs MLflow open and
says so; env=cloud refuses to start (mlops.settings). The options after ours go to `mlflow server` unchanged.

`--check` answers whether the server is ready for the platform: /health, and with auth on, the writer logs in.
That, not /health alone, is the readiness probe of the native runtime and the compose health check: MLflow's
/health answers before the users exist.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from mlops.control_plane import MlflowUsersError, ensure_mlflow_users
from mlops.settings import ConfigurationError, Settings, load_settings

AUTH_APP = "basic-auth"
READY_TIMEOUT_S = 180.0


def auth_config(settings: Settings, database_uri: str, path: Path) -> Path:
    """MLflow's basic-auth config (read from MLFLOW_AUTH_CONFIG_PATH): READ for every user by default, the users in
    `database_uri`; the admin's name and password reach the server through MLFLOW_AUTH_ADMIN_*, never this file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n",
        encoding="utf-8",
    )
    return path


def flask_secret(admin_password: str) -> str:
    return hmac.new(admin_password.encode(), b"mlflow flask server secret key", hashlib.sha256).hexdigest()


def local_url(server_args: Sequence[str]) -> str:
    """Where the server listens, as seen from its own host (for the readiness check)."""
    port = "5000"
    for flag, value in itertools.pairwise(server_args):
        if flag in ("--port", "-p"):
            port = value
    return f"http://127.0.0.1:{port}"


def ready(settings: Settings, url: str) -> tuple[bool, str]:
    """(ready?, why not): /health answers and, with auth on, the writer's credentials are accepted."""
    try:
        if requests.get(f"{url}/health", timeout=3).status_code != 200:
            return False, "/health does not answer 200"
        if not settings.mlflow_admin_password:
            return True, ""
        user = (settings.mlflow_tracking_username or "", settings.mlflow_tracking_password or "")
        answer = requests.get(f"{url}/api/2.0/mlflow/users/current", auth=user, timeout=3)
    except requests.RequestException as error:
        return False, f"{type(error).__name__}"
    return answer.status_code == 200, f"the writer {user[0]!r} is refused ({answer.status_code})"


def _serve(settings: Settings, args: argparse.Namespace, server_args: list[str]) -> int:
    env = dict(os.environ)
    command = [str(Path(sys.executable).with_name("mlflow")), "server", *server_args]
    if settings.mlflow_admin_password:
        state = settings.state_dir / "mlflow"
        database = args.auth_database_uri or f"sqlite:///{state / 'basic_auth.db'}"
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(settings, database, args.auth_config or state / "auth.ini"))
        env["MLFLOW_AUTH_ADMIN_USERNAME"] = settings.mlflow_admin_username
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = settings.mlflow_admin_password
        # the UI's CSRF key: stable across restarts and servers, derived from the admin's secret unless given
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", flask_secret(settings.mlflow_admin_password))
        command += ["--app-name", AUTH_APP]
        print(f"MLflow: basic-auth on (admin {settings.mlflow_admin_username}, users in {database})", flush=True)
    else:
        print("MLflow: MLFLOW_ADMIN_PASSWORD is not set: the server is open to anyone who reaches it", flush=True)
    server = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    if settings.mlflow_admin_password:
        url = local_url(server_args)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while server.poll() is None:
            try:
                if requests.get(f"{url}/health", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                print(f"MLflow did not answer {url}/health within {READY_TIMEOUT_S:.0f} s", file=sys.stderr)
                server.terminate()
                return 1
            time.sleep(0.5)
        if server.poll() is None:
            try:
                changed = ensure_mlflow_users(settings, url)
            except MlflowUsersError as error:
                print(f"MLflow users not set up: {error}", file=sys.stderr, flush=True)
                server.terminate()
                server.wait(30)
                return 1
            print(f"MLflow users ready ({', '.join(changed) or 'unchanged'})", flush=True)
    return server.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.mlflow_server",
        description="Start MLflow's server (basic-auth when MLFLOW_ADMIN_PASSWORD is set); other options go to "
        "`mlflow server`.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None, help="settings file .env.<env>")
    parser.add_argument("--auth-database-uri", default=None, help="users database (default: STATE_DIR/mlflow)")
    parser.add_argument("--auth-config", type=Path, default=None, help="where the auth config is written")
    parser.add_argument("--check", action="store_true", help="exit 0 if the server is ready for the platform")
    args, server_args = parser.parse_known_args(argv)
    try:
        settings = load_settings(args.env)
    except ConfigurationError as error:
        print(f"mlflow server: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        ok, why = ready(settings, local_url(server_args))
        if not ok:
            print(f"MLflow not ready: {why}", file=sys.stderr)
        return 0 if ok else 1
    if settings.mlflow_admin_password and not (
        settings.mlflow_tracking_username and settings.mlflow_tracking_password and settings.mlflow_reader_password
    ):
        print(
            "mlflow server: error: with MLFLOW_ADMIN_PASSWORD set, the platform's users need MLFLOW_TRACKING_USERNAME, "
            "MLFLOW_TRACKING_PASSWORD (the writer) and MLFLOW_READER_PASSWORD (the reader)",
            file=sys.stderr,
        )
        return 2
    if settings.env == "cloud" and not settings.mlflow_admin_password:
        print(
            "mlflow server: error: env=cloud needs MLFLOW_ADMIN_PASSWORD: MLflow would take writes from anyone who "
            "reaches it (set it in the environment, never in the repo)",
            file=sys.stderr,
        )
        return 2
    return _serve(settings, args, server_args)


if __name__ == "__main__":
    sys.exit(main())
