"""`python -m monitoring.evidently_service`: the drift service under gunicorn on DRIFT_HOST:DRIFT_PORT.

One worker with threads: the sliding windows live in that worker's memory, so a second worker would split them.
The app (and its background drift thread) is built in the worker after the fork, never in the master.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication

from mlops.settings import load_settings


class DriftServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], env: str | None) -> None:
        self.options = options
        self.env = env
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from monitoring.evidently_service.app import create_app

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return create_app(load_settings(self.env))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.evidently_service", description=__doc__)
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    options = {
        "bind": f"{settings.drift_host}:{settings.drift_port}",
        "workers": 1,
        "threads": 4,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn's control socket would go to ~/.gunicorn: nothing outside the state dir is written
        "control_socket_disable": True,
    }
    print(f"drift service on http://{settings.drift_host}:{settings.drift_port}", flush=True)
    DriftServer(options, args.env).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
