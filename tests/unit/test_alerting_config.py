"""Alertmanager's config (checked by Debian's amtool), the built-in webhook receiver, and the pipeline rules' metrics
(each name a rule queries is one the platform exports). Alerts fired end to end: tests/integration/test_alerting.py.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from flask import Flask, request
from werkzeug.serving import make_server

from mlops.settings import PROJECT_ROOT, load_settings
from monitoring.alerting import native
from monitoring.alerting.receiver import create_app
from monitoring.prometheus.native import RULES
from native.throwaway import free_port
from tests.support.processes import system_binary


def test_both_configs_pass_amtool_and_send_to_the_receiver(tmp_path: Path) -> None:
    amtool = system_binary("amtool", "prometheus-alertmanager")
    settings = load_settings("local", state_dir=tmp_path, alert_receiver_port=19095)
    path = native.write_config(native.render(native.webhook_url(settings)), tmp_path / "am.yml")
    for config_file in (path, native.SOURCE):  # native's rendering, compose's file as mounted
        done = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(path.read_text())
    assert config["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:19095/alerts"
    compose = yaml.safe_load(native.SOURCE.read_text())
    assert compose["receivers"][0]["webhook_configs"][0]["url"] == "http://alert-receiver:9095/alerts"


def test_the_receiver_forwards_to_the_setting(tmp_path: Path) -> None:
    got: list[dict[str, object]] = []
    sink = Flask("hook")

    @sink.post("/hook")
    def hook() -> dict[str, bool]:
        got.append(request.get_json())
        return {"ok": True}

    port = free_port()
    server = make_server("127.0.0.1", port, sink, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = load_settings("local", state_dir=tmp_path, alert_webhook_url=f"http://127.0.0.1:{port}/hook")
        client = create_app(settings).test_client()
        payload = {"receiver": "webhook", "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]}
        assert client.post("/alerts", json=payload).status_code == 200
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [payload]
    finally:
        server.shutdown()


def test_the_receiver_keeps_what_fired_and_refuses_what_is_not_a_webhook(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, alert_receiver_max_bytes=10_000)
    client = create_app(settings).test_client()
    payload = {
        "version": "4",
        "receiver": "webhook",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "PredictionLogStoreUnavailable"},
                    "annotations": {"summary": "down"}, "startsAt": "2026-12-03T00:00:00Z"}],
    }  # fmt: skip
    assert client.post("/alerts", json=payload).get_json() == {"received": 1}
    (alert,) = client.get("/alerts").get_json()["alerts"]
    assert alert["alertname"] == "PredictionLogStoreUnavailable" and alert["status"] == "firing"
    assert client.post("/alerts", data=b"[" * 50_000, content_type="application/json").status_code == 400
    assert client.post("/alerts", json={"alerts": "no"}).status_code == 400
    for _ in range(200):  # bounded: rotated past the setting
        client.post("/alerts", json=payload)
    log = tmp_path / "alerts" / "alerts.jsonl"
    assert log.stat().st_size < 12_000 and log.with_name("alerts.jsonl.1").exists()


@pytest.mark.parametrize("group", ["churn-pipelines"])
def test_every_metric_a_pipeline_rule_reads_is_exported_by_the_code(group: str) -> None:
    rules = next(g for g in yaml.safe_load(RULES.read_text())["groups"] if g["name"] == group)["rules"]
    code = "\n".join(p.read_text() for d in ("server", "monitoring", "mlops") for p in (PROJECT_ROOT / d).rglob("*.py"))
    for rule in rules:
        for name in set(re.findall(r"\b([a-z_]+_(?:total|seconds|files|entries|depth|restarts))\b", rule["expr"])):
            base = name.removesuffix("_total")
            assert f'"{base}"' in code or f'"{name}"' in code, f"{rule['alert']}: no metric {name} in the code"
