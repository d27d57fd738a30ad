"""gunicorn, started from Python with our configuration (no config file to keep in step with the settings).

The master only warms the local model cache (download once, so workers do not race on it) and keeps the
Prometheus multiprocess directory; each worker builds the app after the fork (no preload), so it loads the model
once, with `OMP_NUM_THREADS=1`, and owns its own background writer threads.

A worker loads its model before it accepts connections (falling back to background retries when neither MLflow nor
the cache has one), so SIGHUP -- gunicorn's graceful reload: new workers, old ones finish their requests -- never
lets a request meet a worker without a model. On SIGHUP the master re-reads the settings (env file included),
forgets earlier `/admin/reload` orders and warms the cache with the newly resolved model first.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from mlops.settings import Settings

log = logging.getLogger(__name__)

THREADS_PER_WORKER = 4  # gthread: keep-alive connections and overlap of socket IO; the GIL bounds CPU work


def metrics_dir_for(settings: Settings) -> Path:
    return settings.state_dir / "prometheus-multiproc" / "predict-api"


def switch_file_for(settings: Settings) -> Path:
    """The SwitchBoard file of one API server (by port: two servers may share a state folder)."""
    return settings.state_dir / "predict-api" / f"model-switch-{settings.api_port}.json"


def _on_starting(server: Any) -> None:
    """A fresh multiprocess directory per master: counters of a previous run must not leak into this one."""
    directory = Path(server.cfg.env.get("PROMETHEUS_MULTIPROC_DIR") or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    from server.predict_api import close_app

    close_app(getattr(worker, "wsgi", None))


class PredictApiApplication(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, settings: Settings, options: dict[str, Any], reread: Callable[[], Settings] | None = None
    ) -> None:
        self.settings = settings
        self.options = options
        self.reread = reread or (lambda: settings)
        super().__init__()

    def reload(self) -> None:
        """SIGHUP in the master: fresh settings, no stale reload order, the new model cached before new workers."""
        try:
            self.settings = self.reread()
        except Exception as error:  # a broken env file must not take the running server down
            log.error("SIGHUP: settings not re-read, keeping the previous ones: %s", error)
        switch_file_for(self.settings).unlink(missing_ok=True)
        warm_model_cache(self.settings)
        super().reload()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from server.model_service import ModelService
        from server.predict_api import create_app

        service = None
        try:
            service = ModelService.from_settings(self.settings)
        except Exception as error:  # create_app retries in the background; /health says why meanwhile
            log.warning("worker starts without a model (retrying in the background): %s", error)
        return create_app(
            self.settings,
            service=service,
            multiprocess_dir=metrics_dir_for(self.settings),
            switch_file=switch_file_for(self.settings),
            reread_settings=self.reread,
        )


def warm_model_cache(settings: Settings) -> None:
    """Download the model to serve into the local cache before forking; best effort (workers retry anyway)."""
    try:
        from mlops import registry

        registry.check_mlflow(settings.mlflow_tracking_uri, timeout=3)
        run_id, why = registry.resolve_run_id(settings)
        registry.download_model(settings, run_id)
        log.info("model %s cached (%s)", run_id, why)
    except Exception as error:
        log.warning("could not warm the model cache (workers will retry or use the cache): %s", error)


def options_for(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.api_host}:{settings.api_port}",
        "workers": settings.api_workers,
        "worker_class": "gthread",
        "threads": THREADS_PER_WORKER,
        "preload_app": False,
        "timeout": 30,
        "graceful_timeout": 15,
        "keepalive": 5,
        "proc_name": "predict-api",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "on_starting": _on_starting,
        "child_exit": _child_exit,
        "worker_exit": _worker_exit,
    }


def run(settings: Settings, reread: Callable[[], Settings] | None = None) -> None:
    """Serve until stopped. Environment first: both must be set before xgboost / prometheus_client load.

    `reread`: fresh settings for SIGHUP and `/admin/reload` (the env file read again).
    """
    from server.access import check_startup

    check_startup(settings)  # env=cloud without API_KEY: refuse here, before forking any worker
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir_for(settings))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    switch_file_for(settings).unlink(missing_ok=True)
    warm_model_cache(settings)
    PredictApiApplication(settings, options_for(settings), reread).run()
