"""POST /admin/reload: re-resolve RUN_ID / alias, load that model, swap it atomically in every worker, and tell the
other API replicas to do the same (server.fleet).

Only served behind a key (API_KEY); the env file is re-read (`reread_settings`), so an edited RUN_ID takes effect
without a restart. A failed reload (MLflow down, no alias, artifacts gone) keeps the previous model and says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint

from mlops.settings import Settings
from server.api.access import AccessPolicy
from server.api.errors import ApiError
from server.fleet import FleetOrders, api_instance, fleet_file_for

if TYPE_CHECKING:
    from server.api.state import ApiState

log = logging.getLogger(__name__)


def admin_blueprint(state: ApiState, access: AccessPolicy, reread_settings: Callable[[], Settings]) -> Blueprint:
    routes = Blueprint("admin", __name__)

    @routes.post("/admin/reload")
    def admin_reload() -> tuple[dict[str, Any], int]:
        if not access.admin_allowed():
            raise ApiError(
                403,
                "admin disabled",
                "set API_KEY (or an API_KEYS key with the admin scope) to enable /admin/reload: it is only served "
                "behind a key",
            )
        try:
            answer = state.reload(reread_settings())
        except Exception as error:  # MLflow down, no alias, artifacts gone: keep serving, say why
            log.warning("hot reload failed, still serving %s: %s", state.service and state.service.run_id, error)
            first = (str(error).strip().splitlines() or [""])[0][:500]
            raise ApiError(
                503, "reload failed", f"{type(error).__name__}: {first}; still serving the previous model"
            ) from None
        if state.switch is not None:  # under gunicorn: the other replicas reload too (server.fleet)
            fleet = FleetOrders(fleet_file_for(state.settings), api_instance(state.settings))
            answer["fleet_generation"] = fleet.publish(answer["model_run_id"], answer["source"])["generation"]
        log.info("hot reload: %s", answer)
        return answer, 200

    return routes
