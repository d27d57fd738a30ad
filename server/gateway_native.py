"""Run Debian's nginx natively as the API gateway, on server/nginx/api-gateway.conf.template (the config compose's
api-gateway service uses), in front of the API_REPLICAS replicas on API_REPLICA_PORT + i.

The template is rendered with an upstream block of the replicas' loopback ports: nginx balances them and stops
sending to one that fails (max_fails / fail_timeout), retrying its request on another. Everything nginx writes is under
$STATE_DIR/api-gateway. `python -m server.gateway_native` renders and execs nginx in the foreground (supervisord's
[program:api-gateway]).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.settings import Settings, load_settings
from reporting.nginx_native import command, main_config, substitute

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "api-gateway.conf.template"
UPSTREAM = "predict_api_replicas"


def replica_ports(settings: Settings) -> list[int]:
    return [settings.api_replica_port + i for i in range(settings.api_replicas)]


def render(prefix: Path, settings: Settings, host: str = "127.0.0.1") -> Path:
    """Write <prefix>/nginx.conf: the gateway on host:API_PORT in front of every replica; returns its path."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    servers = "".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n" for port in replica_ports(settings))
    block = substitute(
        TEMPLATE.read_text(),
        {
            "API_UPSTREAM": f"upstream {UPSTREAM} {{\n{servers}    keepalive 32;\n}}",
            "API_BACKEND": UPSTREAM,
            "API_RESOLVER": "# replicas on fixed loopback ports: no resolver",
            "API_GATEWAY_LISTEN": f"{host}:{settings.api_port}",
        },
    )
    path = prefix / "nginx.conf"
    path.write_text(main_config(prefix, block, source=TEMPLATE.name, connections=4096))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.gateway_native", description=__doc__)
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    parser.add_argument("--render-only", action="store_true", help="write the config, print its path, do not run")
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    prefix = settings.state_dir / "api-gateway"
    config = render(prefix, settings)
    if args.render_only:
        print(config)
        return 0
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        print("nginx is not installed: apt-get install -y nginx (as root), or use RUNTIME=compose", file=sys.stderr)
        return 1
    os.execv(binary, command(config, prefix, binary))
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
