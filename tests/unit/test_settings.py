"""What a flow run's `settings_overrides` parameter may change (issue 24): where its services are, not the gate."""

from __future__ import annotations

import pytest

from mlops.settings import ConfigurationError, load_flow_settings


def test_a_flow_parameter_may_not_loosen_the_gate() -> None:
    assert load_flow_settings("local", {"seed": 3}).seed == 3
    with pytest.raises(ConfigurationError, match="promotion_min_roc_auc"):
        load_flow_settings("local", {"promotion_min_roc_auc": 0.0, "seed": 1})
    with pytest.raises(ConfigurationError, match="api_key"):
        load_flow_settings("local", {"api_key": "x"})
