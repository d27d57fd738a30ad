"""The app factory: the API's state, hooks, error handlers and one blueprint per surface, wired once.

`create_app(settings)` has no side effects at import; `python -m server.api` (server/api/__main__.py) runs it under
gunicorn, each worker building its own app after the fork (server.gunicorn_app).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask

from mlops.settings import Settings
from server.api.access import AccessPolicy
from server.api.admin import admin_blueprint
from server.api.customers import customers_blueprint
from server.api.errors import install_error_handlers
from server.api.hooks import install_hooks
from server.api.meta import meta_blueprint
from server.api.outcomes import outcomes_blueprint
from server.api.predict import predict_blueprint
from server.api.predictions import predictions_blueprint
from server.api.state import ApiState
from server.api.v2 import v2_blueprint
from server.shadow import shadow_for
from server.sinks import PredictionSink, build_sinks

if TYPE_CHECKING:
    from mlops.model_service import ModelService

STATE_KEY = "churn_api"


def create_app(
    settings: Settings,
    service: ModelService | None = None,
    sinks: Sequence[PredictionSink] | None = None,
    multiprocess_dir: Path | None = None,
    switch_file: Path | None = None,
    reread_settings: Callable[[], Settings] | None = None,
) -> Flask:
    """The API. With no `service`, the model loads in a background thread (/health is 503 until it is there).

    `sinks=None` means the defaults of `settings` (prediction log, drift service); pass `[]` for none.
    `multiprocess_dir`: PROMETHEUS_MULTIPROC_DIR when running under gunicorn, so /metrics adds up all workers.
    `switch_file`: the SwitchBoard file the workers of one server share for hot reloads.
    `reread_settings`: fresh settings for `POST /admin/reload` (env file re-read); default: `settings` as given.
    """
    access = AccessPolicy(settings)  # refuses env=cloud without API_KEY and a malformed RATE_LIMIT
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    if settings.api_trusted_proxies:  # behind the gateway: the client's address is the one it saw
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.api_trusted_proxies)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = ApiState(settings, service, [])
    state.scorer.sinks = list(sinks) if sinks is not None else build_sinks(settings, lambda: _dataset(state))
    state.shadow = shadow_for(settings, state.sinks)
    if switch_file is not None:
        from server.registry_follower import follower_status_file_for
        from server.switchboard import SwitchBoard

        state.switch = SwitchBoard(switch_file)
        state.follower_status = follower_status_file_for(settings)
    if service is None:
        state.load_in_background()
    if multiprocess_dir is not None:
        from prometheus_client import CollectorRegistry, multiprocess

        state.metrics_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(state.metrics_registry, path=str(multiprocess_dir))
    app.extensions[STATE_KEY] = state

    install_hooks(app, settings, access)
    install_error_handlers(app, state, settings.max_body_bytes)
    for blueprint in (
        predict_blueprint(state),
        v2_blueprint(state),
        customers_blueprint(state),
        outcomes_blueprint(state),
        admin_blueprint(state, access, reread_settings or (lambda: settings)),
        meta_blueprint(state),
        predictions_blueprint(state),
    ):
        app.register_blueprint(blueprint)
    return app


def _dataset(state: ApiState) -> str:
    """The drift service's data set: the served spec's name (known once a model is loaded)."""
    return state.service.spec.name if state.service else "unknown"


def close_app(app: Any) -> None:
    """Drain the app's sinks (prediction log, drift); gunicorn calls this when a worker exits."""
    state = getattr(app, "extensions", {}).get(STATE_KEY)
    if state is not None:
        state.close()
