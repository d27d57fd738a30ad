"""The alert webhook receiver Alertmanager calls, in both runtimes: it keeps a record and forwards.

    python -m monitoring.alerting.receiver [--env E] [--host H] [--port P]

POST /alerts takes Alertmanager's webhook payload (version 4), appends one JSON line per alert, with the receiving
time, to `<STATE_DIR>/alerts/alerts.jsonl` (rotated to `alerts.jsonl.1` past ALERT_RECEIVER_MAX_BYTES), logs it, and
forwards the payload unchanged to ALERT_WEBHOOK_URL when that is set (your chat, pager or incident tool; retried
three times, failures logged and counted in /health). GET /alerts returns the newest ones (`?limit=`).

Why a receiver in front of the real one: Alertmanager cannot read a URL from the environment (its config is a
file), so the one setting lives here for compose and native alike; and the local record is what a machine with
nothing else keeps, and what the alerting tests read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from mlops.contract.text import TextError, loads_text
from mlops.settings import Settings, load_settings
from mlops.stores.ids import utc_now_iso

log = logging.getLogger("alert_receiver")


class AlertLog:
    """Alerts as JSON lines, bounded: past `max_bytes` the file is rotated once (the previous generation kept)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, alerts: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("a") as handle:
                for alert in alerts:
                    handle.write(json.dumps(alert) + "\n")

    def newest(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            if not self.path.exists():
                return []
            lines = self.path.read_text().splitlines()[-limit:]
        return [json.loads(line) for line in lines if line.strip()]


class Forwarder:
    """POSTs each payload to ALERT_WEBHOOK_URL off the request thread (Alertmanager must not wait on a slow hook)."""

    def __init__(self, url: str, attempts: int = 3, timeout_s: float = 10.0) -> None:
        self.url = url
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.forwarded = 0
        self.failed = 0
        self.last_error: str | None = None

    def send(self, payload: dict[str, Any]) -> None:
        threading.Thread(target=self._post, args=(payload,), name="alert-forwarder", daemon=True).start()

    def _post(self, payload: dict[str, Any]) -> None:
        import requests

        for attempt in range(1, self.attempts + 1):
            try:
                requests.post(self.url, json=payload, timeout=self.timeout_s).raise_for_status()
            except requests.RequestException as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("forwarding to ALERT_WEBHOOK_URL failed (attempt %d): %s", attempt, self.last_error)
                time.sleep(2**attempt)
                continue
            self.forwarded += 1
            self.last_error = None
            return
        self.failed += 1


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 5_000_000
    alerts = AlertLog(settings.state_dir / "alerts" / "alerts.jsonl", settings.alert_receiver_max_bytes)
    forwarder = Forwarder(settings.alert_webhook_url) if settings.alert_webhook_url else None

    @app.post("/alerts")
    def receive() -> tuple[Any, int]:
        try:
            payload = loads_text(request.get_data(cache=False))
        except (TextError, ValueError, RecursionError) as error:
            return jsonify(error=f"expected Alertmanager's webhook JSON: {error}"), 400
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            return jsonify(error="expected Alertmanager's webhook JSON: an object with a list of alerts"), 400
        received = utc_now_iso()
        kept = [
            {
                "received_at": received,
                "status": alert.get("status"),
                "alertname": (alert.get("labels") or {}).get("alertname"),
                "labels": alert.get("labels") or {},
                "annotations": alert.get("annotations") or {},
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "receiver": payload.get("receiver"),
            }
            for alert in payload["alerts"]
            if isinstance(alert, dict)
        ]
        alerts.append(kept)
        if forwarder is not None:
            forwarder.send(payload)
        for alert in kept:
            log.warning("alert %s %s: %s", alert["alertname"], alert["status"], alert["annotations"].get("summary"))
        return jsonify(received=len(kept)), 200

    @app.get("/alerts")
    def newest() -> Any:
        limit = request.args.get("limit", default=100, type=int) or 100
        return jsonify(alerts=alerts.newest(max(1, min(limit, 10_000))))

    @app.get("/health")
    def health() -> Any:
        if forwarder is not None and forwarder.last_error:
            return jsonify(status="degraded", problems=[f"ALERT_WEBHOOK_URL not answering: {forwarder.last_error}"])
        return jsonify(status="ok", forwarding_to=bool(forwarder))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.alerting.receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    parser.add_argument("--host", default=None, help="default: API_HOST")
    parser.add_argument("--port", type=int, default=None, help="default: ALERT_RECEIVER_PORT")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from werkzeug.serving import make_server  # a few calls a minute at most: werkzeug's threaded server will do

    host, port = args.host or settings.api_host, args.port or settings.alert_receiver_port
    server = make_server(host, port, create_app(settings), threaded=True)
    log.info("alert receiver on http://%s:%d/alerts, writing %s", host, port, settings.state_dir / "alerts")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
