"""Prometheus config and alert rules pass promtool, and the native render keeps the compose jobs on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mlops.settings import load_settings
from monitoring.prometheus import native
from tests.support.processes import system_binary


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([system_binary("promtool", "prometheus"), *args], capture_output=True, text=True, timeout=60)


def test_compose_config_passes_promtool() -> None:
    done = promtool("check", "config", str(native.COMPOSE_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_pass_promtool() -> None:
    done = promtool("check", "rules", str(native.RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "15 rules found" in done.stdout


def test_native_render_passes_promtool_and_scrapes_loopback(tmp_path: Path) -> None:
    settings = load_settings(
        "local",
        api_port=19696,
        api_replica_port=19700,
        api_replicas=2,
        kinesis_metrics_port=19697,
        drift_port=18085,
        kinesis_consumers=3,
    )
    config = native.render(native.native_targets(settings))
    path = native.write_config(config, tmp_path / "prometheus.yml")
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "predict-api": ["127.0.0.1:19700", "127.0.0.1:19701"],  # each replica, not the gateway on API_PORT
        "serve-kinesis": ["127.0.0.1:19697", "127.0.0.1:19698", "127.0.0.1:19699"],  # every member of the group
        "drift-service": ["127.0.0.1:18085"],
        "prometheus": ["127.0.0.1:9091"],
    }
    assert config["rule_files"] == [str(native.RULES)]
    assert not any("dns_sd_configs" in job for job in config["scrape_configs"])


def test_compose_config_scrapes_every_service_by_its_compose_name() -> None:
    config = yaml.safe_load(native.COMPOSE_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items() if "static_configs" in job}
    # the API's replicas and the consumers scale (--scale X=N): every replica, found by its service's name in DNS
    for job, port in (("predict-api", 9696), ("serve-kinesis", 9697)):
        assert jobs[job]["dns_sd_configs"] == [{"names": [job], "type": "A", "port": port, "refresh_interval": "15s"}]
    assert targets["drift-service"] == ["drift-service:8085"]
    assert config["rule_files"] == ["rules.yml"]


def test_render_refuses_unknown_jobs_and_drops_unlisted_ones() -> None:
    with pytest.raises(ValueError, match="no job named"):
        native.render({"nope": ["127.0.0.1:1"]})
    config = native.render({"drift-service": ["127.0.0.1:2"]}, scrape_interval="1s", evaluation_interval="1s")
    assert [job["job_name"] for job in config["scrape_configs"]] == ["drift-service"]
    assert config["global"]["scrape_interval"] == "1s" and config["global"]["evaluation_interval"] == "1s"


def test_every_alert_has_a_duration_severity_and_summary() -> None:
    groups = yaml.safe_load(native.RULES.read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert {"DataDriftDetected", "PredictApiHighErrorRate", "PredictApiHighLatencyP99", "NoPredictions"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
