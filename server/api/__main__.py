"""`python -m server.api`: the HTTP API under gunicorn on API_HOST:API_PORT with API_WORKERS workers, each loading
the model once after the fork.

Every bad input is an answer, never a crash: a 4xx JSON body `{"error", "field", "reason"}` (plus `index` for a
record of a batch). Every response carries `X-Request-ID`. Access (server.api.access): `x-api-key` when API_KEY is
set (always with env=cloud), RATE_LIMIT per key -> 429. Hot reload: `POST /admin/reload` (behind the key), or SIGHUP
to the gunicorn master, switches every worker to the model RUN_ID / the alias names now, in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlops.settings import load_settings
from server.api.app import close_app, create_app


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m server.api [--env E] [--host H] [--port P] [--workers N]`: gunicorn with our config."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m server.api",
        description="The churn prediction HTTP API (POST /predict, V2, by customer id, outcomes) under gunicorn.",
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    parser.add_argument("--host", default=None, help="default: API_HOST")
    parser.add_argument("--port", type=int, default=None, help="default: API_PORT")
    parser.add_argument("--workers", type=int, default=None, help="default: API_WORKERS")
    parser.add_argument(
        "--replica",
        type=int,
        default=None,
        metavar="I",
        help="replica I behind the native gateway: port API_REPLICA_PORT + I (supervisord's numprocs)",
    )
    args = parser.parse_args(argv)
    port = args.port
    if args.replica is not None:
        if args.replica < 0:
            parser.error(f"--replica must be >= 0, got {args.replica}")
        port = load_settings(args.env).api_replica_port + args.replica
    overrides = {k: v for k, v in {"api_host": args.host, "api_port": port, "api_workers": args.workers}.items() if v}
    from server.gunicorn_app import run

    run(
        load_settings(args.env, **overrides),
        app_factory=create_app,
        close_app=close_app,
        reread=lambda: load_settings(args.env, **overrides),
    )


if __name__ == "__main__":
    main()
