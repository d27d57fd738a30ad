"""A compiled load generator for the HTTP benchmarks: Debian's `wrk` with a Lua script for the POST bodies.

Why not the Python client of bench.harness: its threads need about as much CPU per request as the servers do, so
on 2 cores it capped every server near the same rate. wrk (C, one thread, epoll) is pinned with `taskset` to the
core the servers are not on, and `Wrk.cpu_share` reports how busy it was: a client far from 100% of its core is not
the limit. The ceiling server (bench.ceiling_server) shows the same from the other side: it answers far faster
than any model server under the same client.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"


class LoadGeneratorMissing(SystemExit):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise LoadGeneratorMissing(
            "wrk is not installed: `make bench-packages` (as root) installs Debian's wrk, or apt-get install -y wrk"
        )
    return found


def pinned(command: list[str], core: int | None) -> list[str]:
    """`command` on one core (taskset), when there is more than one core to choose from."""
    if core is None or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return command
    return ["taskset", "-c", str(core), *command]


@dataclass
class Wrk:
    """One wrk run: what it measured and the command that produced it."""

    command: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    cpu_share: float  # wrk's CPU time / wall time: 1.0 = its core was full

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    bodies: list[bytes],
    scratch: Path,
    seconds: float,
    connections: int,
    rate: float | None = None,
    core: int | None = None,
    api_key: str | None = None,
) -> Wrk:
    """Closed loop (`rate` None: saturation) or paced to `rate` req/s, `connections` keep-alive connections."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")  # the query too (?explain=3)
    bodies_file = scratch / f"bodies-{abs(hash(tuple(bodies))) % 10**8}.jsonl"
    if not bodies_file.exists():
        bodies_file.write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in bodies) + b"\n")
    env = {
        **os.environ,
        "WRK_BODIES": str(bodies_file),
        "WRK_PATH": target,
        "WRK_RATE": f"{rate:.3f}" if rate else "0",
        "WRK_API_KEY": api_key or "",
    }
    base = f"{parts.scheme}://{parts.netloc}"
    duration = f"-d{max(1, round(seconds))}s"
    wrk = [wrk_binary(), "-t1", f"-c{connections}", duration, "--timeout", "10s", "-s", str(SCRIPT)]
    command = pinned([*wrk, base + target], core)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr[-2000:]}")
    summary_line = [line for line in finished.stdout.splitlines() if line.startswith('{"requests"')]
    if not summary_line:
        raise RuntimeError(f"wrk printed no summary:\n{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}")
    figures = json.loads(summary_line[-1])
    wall = figures["duration_us"] / 1e6
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    shown = " ".join(shlex.quote(c) for c in command)
    rate_env = f"WRK_RATE={rate:.0f} " if rate else ""
    return Wrk(
        command=f"WRK_BODIES={bodies_file.name} {rate_env}{shown}",
        requests=figures["requests"],
        seconds=wall,
        errors=errors,
        p50_ms=figures["p50_us"] / 1e3,
        p90_ms=figures["p90_us"] / 1e3,
        p99_ms=figures["p99_us"] / 1e3,
        p999_ms=figures["p999_us"] / 1e3,
        cpu_share=cpu / wall if wall else 0.0,
    )
