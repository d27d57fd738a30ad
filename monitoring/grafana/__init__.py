"""Grafana provisioning (compose) and helpers that read the dashboards' PromQL (tests run it on a real Prometheus)."""
