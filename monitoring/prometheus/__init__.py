"""Prometheus for the platform: prometheus.yml + rules.yml (compose) and `native.py` (the same config on loopback)."""
