"""rules.yml as the alerting tests run it: the real rules, with `for:` short enough to fire within seconds."""

from __future__ import annotations

from pathlib import Path

import yaml

from monitoring.prometheus import native


def short_rules(target: Path) -> Path:
    """rules.yml with every `for:` at 3s and groups evaluated every second, written to `target`."""
    rules = yaml.safe_load(native.RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "3s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))
    return target
