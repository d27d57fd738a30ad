"""The floor of our HTTP stack: the same gunicorn configuration (server.gunicorn_app: gthread, threads, keep-alive)
and Flask, answering every POST with a constant JSON body after reading the request's. No validation, model, log
or metrics: what remains is the cost of gunicorn + Flask per request, the most any of our endpoints could reach.

    .venv/bin/python -m bench.ceiling_server        # API_PORT, API_WORKERS as for the API
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

ANSWER = json.dumps(
    {
        "model_name": "churn-model",
        "model_version": "ceiling",
        "id": "0",
        "parameters": {"model_run_id": "ceiling"},
        "outputs": [{"name": "churn_chance", "shape": [1], "datatype": "FP64", "data": [0.0123456789]}],
    }
).encode()


def create_constant_app(*_: Any, **__: Any) -> Flask:
    """The app factory gunicorn_app calls in each worker (its arguments are the API's; none is used here)."""
    app = Flask(__name__)

    @app.route("/<path:path>", methods=["GET", "POST"])
    def constant(path: str) -> Response:
        request.get_data(cache=False)
        return Response(ANSWER, mimetype="application/json")

    return app


def main() -> None:
    from mlops.settings import load_settings
    from server.gunicorn_app import run

    run(load_settings(), app_factory=create_constant_app, close_app=lambda app: None)


if __name__ == "__main__":
    main()
