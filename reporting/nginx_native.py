"""Run Debian's nginx natively on reporting/nginx/reports.conf.template (the config compose's nginx uses).

The template's server block is rendered with the loopback port and the reports folder, and wrapped in a main
config that keeps everything nginx writes (pid, logs, temp files) under $STATE_DIR/nginx, so it runs without root.
`python -m reporting.nginx_native` renders and execs nginx in the foreground (supervisord's [program:nginx]).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops.settings import Settings, load_settings

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "reports.conf.template"
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """envsubst restricted to `values` (like the nginx image's entrypoint): other ${...} and $vars stay."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def main_config(
    prefix: Path,
    server_block: str,
    mime_types: Path = Path("/etc/nginx/mime.types"),
    source: str = TEMPLATE.name,
    connections: int = 256,
) -> str:
    """A whole nginx.conf around `server_block`; every writable path is under `prefix`."""
    temp = prefix / "tmp"
    # As root (CI, containers) the workers would switch to 'nobody', who cannot read a private state dir.
    user = f"user {getpass.getuser()};\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    mime = f"include {mime_types};" if mime_types.exists() else "types { text/html html; text/css css; }"
    return f"""# generated from {source}: edit that file
{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections {connections}; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
    client_body_temp_path {temp / "client_body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    sendfile on;
{server_block}
}}
"""


def render(prefix: Path, port: int, reports_dir: Path, host: str = "127.0.0.1") -> Path:
    """Write <prefix>/nginx.conf serving `reports_dir` on host:port; returns its path."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)
    block = substitute(TEMPLATE.read_text(), {"REPORTS_PORT": f"{host}:{port}", "REPORTS_DIR": str(reports_dir)})
    path = prefix / "nginx.conf"
    path.write_text(main_config(prefix, block))
    return path


def command(config: Path, prefix: Path, binary: str = "nginx") -> list[str]:
    return [binary, "-p", str(prefix), "-e", "stderr", "-c", str(config), "-g", "daemon off;"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reporting.nginx_native", description=__doc__)
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    parser.add_argument("--render-only", action="store_true", help="write the config, print its path, do not run")
    args = parser.parse_args(argv)
    settings: Settings = load_settings(args.env)
    prefix = settings.state_dir / "nginx"
    config = render(prefix, settings.reports_port, settings.reports_location)
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
