"""The provisioned Grafana files are well formed and every panel queries Prometheus with valid-looking PromQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring.grafana.queries import DASHBOARDS, panels, queries, to_promql, variable_defaults
from tests.support.processes import system_binary

GRAFANA = DASHBOARDS.parent
DASHBOARD = DASHBOARDS / "churn.json"


def test_dashboard_is_json_with_unique_ids_and_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    found = list(panels(dashboard))
    assert len(found) >= 8
    assert len({p["id"] for p in found}) == len(found)
    for panel in found:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} target {target['refId']} has no PromQL expr"
            assert target["datasource"]["uid"] == "prometheus"


def test_dashboard_covers_what_the_issue_asks() -> None:
    exprs = " ".join(q.expr for q in queries(DASHBOARD))
    for metric in (
        "drift_share",  # drift share
        "drift_column_score",  # per-feature drift
        "predict_api_requests_total",  # request rate, 4xx/5xx
        "predict_api_request_duration_seconds_bucket",  # latency p50/p99
        "predict_api_prediction_churn_chance_bucket",  # prediction distribution
        "predict_api_model_info",  # the served model's run id
    ):
        assert metric in exprs, metric
    assert "histogram_quantile(0.5" in exprs and "histogram_quantile(0.99" in exprs
    assert 'status=~"4.."' in exprs and 'status=~"5.."' in exprs


def test_variables_are_substituted_and_unknown_ones_refused() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = variable_defaults(dashboard)
    assert variables == {"dataset": "bank_churners"}
    for query in queries(DASHBOARD):
        assert "$" not in to_promql(query.expr, variables)
    with pytest.raises(KeyError, match="nope"):
        to_promql("rate(x[$nope])", {})


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool parses each expression (as a recording rule), so a typo fails here and not in Grafana."""
    variables = variable_defaults(json.loads(DASHBOARD.read_text()))
    rules = [
        {"record": f"dashboard:panel_{i}:expr", "expr": to_promql(q.expr, variables)}
        for i, q in enumerate(queries(DASHBOARD))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [system_binary("promtool", "prometheus"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_provisioning_points_at_the_compose_prometheus_and_the_dashboards_folder() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9091"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
