"""The PromQL of the provisioned dashboards, with Grafana's variables replaced so Prometheus can run it as is.

Grafana is compose-only (not in Debian): the dashboards are proven natively by running every panel's expression
against a real Prometheus (tests/integration/test_monitoring.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"
GRAFANA_DEFAULTS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(path: Path) -> list[PanelQuery]:
    dashboard = json.loads(path.read_text())
    return [
        PanelQuery(path.name, panel.get("title", ""), target.get("refId", ""), target.get("expr", ""))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_defaults(dashboard: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        value = variable.get("current", {}).get("value")
        if isinstance(value, str):
            out[variable["name"]] = value
    return out


def to_promql(expr: str, variables: Mapping[str, str]) -> str:
    """Replace $var / ${var}; an unknown variable is an error (it would reach Prometheus as a parse error)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in GRAFANA_DEFAULTS:
            return GRAFANA_DEFAULTS[name]
        raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)
