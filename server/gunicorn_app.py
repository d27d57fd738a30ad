"""gunicorn, started from Python with our configuration (no config file to keep in step with the settings).

The master only warms the local model cache (download once, so workers do not race on it) and keeps the
Prometheus multiprocess directory; each worker builds the app after the fork (no preload), so it loads the model
once, with `OMP_NUM_THREADS=1`, and owns its own background writer threads.

A worker loads its model before it accepts connections (falling back to background retries when neither MLflow nor
the cache has one), so no request meets a worker without a model.

SIGHUP switches the model in place instead of gunicorn's default (new workers, old ones shut down): the master
re-reads the settings (env file included), resolves RUN_ID / alias, downloads the model into the cache and publishes
it on the SwitchBoard, which every worker checks before each request (the `/admin/reload` path). Why not replace the
workers: an old worker closes its idle keep-alive connections when it stops, and a client that sent its next request
on one at that moment gets "connection reset" (2 failed requests in a CI run under load). In
place, no connection is touched. Settings other than the model (port, workers, key, limits) take effect on restart.

This module knows gunicorn, not Flask: `python -m server.api` hands it the app factory and the app's closer, so
the import goes one way (server.api.__main__ -> gunicorn_app).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from mlops.settings import Settings
from server.fleet import FleetOrders, api_instance, fleet_file_for

log = logging.getLogger(__name__)


def metrics_dir_for(settings: Settings) -> Path:
    """Per replica: a starting master empties it, which must not wipe another replica's counters."""
    return settings.state_dir / "prometheus-multiproc" / f"predict-api-{api_instance(settings)}"


def switch_file_for(settings: Settings) -> Path:
    """The SwitchBoard file of one API server (replicas share a state folder: server.fleet)."""
    return settings.state_dir / "predict-api" / f"model-switch-{api_instance(settings)}.json"


def _on_starting(server: Any) -> None:
    """A fresh multiprocess directory per master: counters of a previous run must not leak into this one."""
    directory = Path(server.cfg.env.get("PROMETHEUS_MULTIPROC_DIR") or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


_PID = [0]


def _cached_pid() -> int:
    return _PID[0]


def _refresh_cached_pid() -> None:
    _PID[0] = os.getpid()


def use_cached_pid_for_metrics() -> None:
    """prometheus_client's multiprocess values ask `os.getpid()` on every inc and observe (to notice a fork): a
    system call each, ~5% of a worker's GIL time at saturation (py-spy). The same check against a pid refreshed
    after every fork (`os.register_at_fork`), through the `process_identifier` hook prometheus_client offers for
    this. Must run before the first metric is made (metrics take `values.ValueClass` when they are created)."""
    from prometheus_client import values

    if not _PID[0]:  # once per process: at-fork hooks cannot be removed
        os.register_at_fork(after_in_child=_refresh_cached_pid)
    _refresh_cached_pid()
    values.ValueClass = values.MultiProcessValue(process_identifier=_cached_pid)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


AppFactory = Callable[..., Any]  # create_app(settings, service=, multiprocess_dir=, switch_file=, reread_settings=)
AppCloser = Callable[[Any], None]


def _worker_exit_hook(close_app: AppCloser) -> Callable[[Any, Any], None]:
    def worker_exit(server: Any, worker: Any) -> None:
        close_app(getattr(worker, "wsgi", None))

    return worker_exit


class PredictApiApplication(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        settings: Settings,
        options: dict[str, Any],
        app_factory: AppFactory,
        reread: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.app_factory = app_factory
        self.reread = reread or (lambda: settings)
        super().__init__()

    def switch_model(self) -> None:
        """SIGHUP in the master: fresh settings, the model they name cached, then published to every worker.

        Any failure (a broken env file, MLflow down, an unknown RUN_ID) is logged with its cause and the workers keep
        serving the model they have.
        """
        try:
            fresh = self.reread()
        except Exception as error:  # a broken env file must not take the running server down
            log.error("SIGHUP: settings not re-read, still serving the current model: %s", error)
            return
        try:
            from mlops import registry

            run_id, why = registry.resolve_and_cache(fresh)
        except Exception as error:
            log.error("SIGHUP: no model switch, still serving the current model: %s", error)
            return
        self.settings = fresh  # a worker gunicorn starts later (crash, timeout) begins on the same model
        self._publish(fresh, run_id, f"{why}; hot reload (SIGHUP)")
        self.follower = self._follower(fresh, run_id)  # RUN_ID may have been pinned or cleared

    def _publish(self, settings: Settings, run_id: str, source: str) -> None:
        """Tell every worker to switch (the SwitchBoard); the model is in the cache already."""
        from mlops.model_service import remember_served
        from server.switchboard import SwitchBoard

        remember_served(settings.model_cache_dir, run_id)
        order = SwitchBoard(switch_file_for(settings)).publish(run_id, source)
        log.info("workers switch to run %s (%s), generation %s", run_id, source, order["generation"])

    def _follower(self, settings: Settings, run_id: str | None) -> Any:
        from server.registry_follower import RegistryFollower, follower_status_file_for

        def switch(new_run_id: str, why: str) -> None:
            from mlops import registry

            registry.download_model(settings, new_run_id)  # cached before any worker looks for it
            self._publish(settings, new_run_id, f"{why}; registry moved (followed)")

        return RegistryFollower(settings, run_id, switch, status_file=follower_status_file_for(settings))

    def follow_registry(self) -> None:
        """Called from the master's loop about once a second: a moved alias switches the workers in place, and a
        reload another replica made (server.fleet) is made here too, as SIGHUP makes it."""
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.maybe_check()
        fleet = getattr(self, "fleet", None)
        order = fleet.pending() if fleet is not None else None
        if order is not None:
            log.info("replica %s reloaded (%s): reloading here too", order.get("origin"), order.get("source"))
            self.switch_model()

    def run(self) -> None:
        try:
            HotSwapArbiter(self).run()
        except RuntimeError as error:
            log.error("%s", error)
            raise SystemExit(1) from None

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from mlops.model_service import ModelService

        service = None
        try:
            service = ModelService.from_settings(self.settings)
        except Exception as error:  # create_app retries in the background; /health says why meanwhile
            log.warning("worker starts without a model (retrying in the background): %s", error)
        app = self.app_factory(
            self.settings,
            service=service,
            multiprocess_dir=metrics_dir_for(self.settings),
            switch_file=switch_file_for(self.settings),
            reread_settings=self.reread,
        )
        freeze_loaded_objects()
        return app


def freeze_loaded_objects() -> None:
    """Move what the worker loaded (libraries, the model, the app: ~330,000 objects) out of the garbage collector's
    reach. A full collection walks every tracked object and held the GIL ~190 ms on this heap, a pause every request
    in flight waited out; the loaded objects live as long as the worker, so walking them finds nothing. Requests'
    own objects are still collected as before. (`gc.freeze`, as the Python docs suggest for forking servers.) A
    model swap thaws them (ModelService.swap), so the model it replaces can be collected."""
    gc.collect()
    gc.freeze()


class HotSwapArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, with SIGHUP meaning "switch the model in place" (see the module docstring), and, with
    RUN_ID empty, following the registry's alias from its own loop (murder_workers runs about once a second)."""

    def handle_hup(self) -> None:
        self.log.info("Hang up: switching the model in place, workers and connections kept")
        self.app.switch_model()

    def murder_workers(self) -> None:
        super().murder_workers()
        self.app.follow_registry()


def warm_model_cache(settings: Settings) -> str | None:
    """Download the model to serve into the local cache before forking; best effort (workers retry anyway).
    Returns its run id (None when it could not be resolved)."""
    try:
        from mlops import registry

        run_id, why = registry.resolve_and_cache(settings)
        log.info("model %s cached (%s)", run_id, why)
        return run_id
    except Exception as error:
        log.warning("could not warm the model cache (workers will retry or use the cache): %s", error)
        return None


def options_for(settings: Settings, close_app: AppCloser = lambda app: None) -> dict[str, Any]:
    return {
        "bind": f"{settings.api_host}:{settings.api_port}",
        "workers": settings.api_workers,
        "worker_class": "gthread",
        "threads": settings.api_threads,
        "preload_app": False,
        "timeout": 30,
        "graceful_timeout": 15,
        "keepalive": 5,
        "proc_name": "predict-api",
        "control_socket_disable": True,  # one fixed path under $HOME, shared by every server on the machine; unused
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "on_starting": _on_starting,
        "child_exit": _child_exit,
        "worker_exit": _worker_exit_hook(close_app),
    }


def run(
    settings: Settings,
    app_factory: AppFactory,
    close_app: AppCloser,
    reread: Callable[[], Settings] | None = None,
) -> None:
    """Serve until stopped. Environment first: both must be set before xgboost / prometheus_client load.

    `app_factory` builds the WSGI app in each worker, `close_app` drains it when the worker exits; `reread`: fresh
    settings for SIGHUP and `/admin/reload` (the env file read again).
    """
    from server.api.access import check_startup

    check_startup(settings)  # env=cloud without API_KEY: refuse here, before forking any worker
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir_for(settings))
    use_cached_pid_for_metrics()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    from server.switchboard import SwitchBoard

    SwitchBoard(switch_file_for(settings)).reset()  # before the fork: every worker maps its counter
    run_id = warm_model_cache(settings)
    application = PredictApiApplication(settings, options_for(settings, close_app), app_factory, reread)
    application.follower = application._follower(settings, run_id)
    application.fleet = FleetOrders(fleet_file_for(settings), api_instance(settings))
    application.fleet.start()
    application.run()
