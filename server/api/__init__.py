"""The HTTP API (Flask under gunicorn): POST /predict, the V2 protocol, scoring by customer id, POST /outcomes,
/admin/reload, /health, /metrics, /openapi.json. `app` is the factory; one module per surface."""

from server.api.app import STATE_KEY, close_app, create_app

__all__ = ["STATE_KEY", "close_app", "create_app"]
