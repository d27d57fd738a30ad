"""HTTP, one record per request: our API against Seldon's MLServer (XGBoost runtime, the same booster) and against
the ceiling of our own stack (same gunicorn/Flask configuration, constant answer), in one run, V2 requests for all.

    .venv/bin/python -m bench.bench_http                       # model: RUN_ID / alias from MLflow, else trained here
    .venv/bin/python -m bench.bench_http --model-dir DIR       # a downloaded MLflow model folder
    .venv/bin/python -m bench.bench_http --profile             # and py-spy's top functions of our worker

Each server has one worker process, pinned to core 0 (`taskset`); the client is wrk (bench.loadgen), one thread,
pinned to core 1, `--connections` keep-alive connections. Saturation: closed loop for `--seconds`, `--rounds`
times, servers interleaved. Then each at 70% of its own saturation (paced), and ours at MLServer's 70% rate too,
`--rounds` times interleaved: the median p99 is what "at <= its p99" compares (one run's p99 moved 3-15 ms).
Ours does all its work on every request (V2 pandas form: validation by the record contract, encoding, the SQLite
prediction log, metrics); MLServer gets the record pre-encoded as one FP32 tensor (it cannot validate a raw
record). Every figure is printed with the wrk command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import mlserver_peer  # noqa: E402
from bench.harness import bench_model, cache_model, sample_records  # noqa: E402
from bench.loadgen import Wrk, pinned, run_wrk  # noqa: E402
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http  # noqa: E402

SERVER_CORE, CLIENT_CORE = 0, 1
GOAL_VS_MLSERVER, GOAL_VS_CEILING = 1.5, 0.6


@dataclass
class Server:
    name: str
    url: str  # the infer URL
    bodies: list[bytes]
    process: Any = None
    log: Path | None = None
    saturation: list[Wrk] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return statistics.median(w.throughput for w in self.saturation)


def v2_pandas_body(record: dict[str, Any], spec: Any) -> bytes:
    """The V2 pandas form of one record (MLServer's PandasCodec): one input per column."""
    from server.api.v2_tensors import input_metadata

    types = {entry["name"]: entry["datatype"] for entry in input_metadata(spec)}
    inputs = []
    for column, value in record.items():
        datatype = types.get(column, "BYTES")
        if datatype == "INT64" and isinstance(value, float) and value.is_integer():
            value = int(value)  # an integer column of a data frame is sent as integers
        inputs.append({"name": column, "shape": [1], "datatype": datatype, "data": [value]})
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def v2_tensor_body(row: list[float]) -> bytes:
    """The record pre-encoded, as mlserver-xgboost takes it: one FP32 tensor [1, n_features]."""
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def worker_pid(master: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.2)
    raise SystemExit(f"no worker under gunicorn master {master}")


def profile(pid: int, seconds: float, out: Path) -> tuple[list[tuple[str, float, float]], list[tuple[str, float]]]:
    """py-spy's samples of `pid`, only of the thread holding the GIL (`--gil`: where the one core's Python time
    goes, not threads waiting for it): (function, self share, inclusive share) by self time, and by inclusive time
    the functions of packages (one line per package and function)."""
    py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    options = ["--duration", str(int(seconds)), "--rate", "400", "--format", "raw", "--gil", "--nonblocking"]
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), *options, "--output", str(out)],
        check=True,
        capture_output=True,
    )
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("<module>", "run (", "_bootstrap", "wait ("))] or frames
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return [], []
    by_self = [(name, n / total, inclusive[name] / total) for name, n in own.most_common(20)]
    by_inclusive = [(name, n / total) for name, n in inclusive.most_common(60)]
    return by_self, by_inclusive


def _frame(raw: str) -> str:
    """py-spy's `function (path/file.py:line)` as `function (file.py)`."""
    function, _, where = raw.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10, help="each saturation run")
    parser.add_argument("--load-seconds", type=float, default=10, help="each 70%% run")
    parser.add_argument("--rounds", type=int, default=2, help="saturation and paced runs per server, interleaved")
    parser.add_argument("--profile", action="store_true", help="py-spy on our worker during one saturation run")
    parser.add_argument("--no-mlserver", action="store_true", help="ours and the ceiling only")
    args = parser.parse_args(argv)

    from mlops.contract import validator_for
    from mlops.model import ModelBundle
    from mlops.registry import model_name_for
    from mlops.settings import load_settings

    settings = load_settings()
    scratch = Path(tempfile.mkdtemp(prefix="bench-http-"))
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    cache_model(model_dir, scratch / "state", run_id)
    bundle = ModelBundle.from_model_dir(model_dir)
    spec = bundle.spec
    check = validator_for(spec)
    records = []
    for record in sample_records(spec):
        row = bundle.encoder.encode_records([check(record)])[0]
        if all(v == v for v in row):  # no missing value: JSON has no NaN, and MLServer must get the same rows
            records.append((record, [float(v) for v in row]))
    name = model_name_for(settings, spec)
    ours_port, ceiling_port, mlserver_port = free_port(), free_port(), free_port()
    dead = free_port()
    common = {
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead}",
        "API_WORKERS": "1",
        "DRIFT_SERVICE_URL": "",
        "OMP_NUM_THREADS": "1",
        "MODEL_NAME": name,
    }
    ours = Server("ours (V2, validated)", f"http://127.0.0.1:{ours_port}/v2/models/{name}/infer", [])
    ours.bodies = [v2_pandas_body(record, spec) for record, _ in records]
    ceiling = Server("ceiling (constant)", f"http://127.0.0.1:{ceiling_port}/v2/models/{name}/infer", ours.bodies)
    mlserver = Server(
        f"MLServer {mlserver_peer.VERSION}",
        f"http://127.0.0.1:{mlserver_port}{mlserver_peer.infer_path()}",
        [v2_tensor_body(row) for _, row in records],
    )
    servers = [ours, ceiling] + ([] if args.no_mlserver else [mlserver])
    print(
        f"model {run_id} ({bundle.booster.num_boosted_rounds()} trees); {len(records)} distinct records; one worker "
        f"each on core {SERVER_CORE}; wrk on core {CLIENT_CORE}; {args.connections} connections; "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    try:
        python = str(VENV_BIN / "python")
        ours.log, ceiling.log = scratch / "ours.log", scratch / "ceiling.log"
        ours.process = start_process(
            pinned([python, "-m", "server.api"], SERVER_CORE), ours.log, {**common, "API_PORT": str(ours_port)}
        )
        ceiling.process = start_process(
            pinned([python, "-m", "bench.ceiling_server"], SERVER_CORE),
            ceiling.log,
            {**common, "API_PORT": str(ceiling_port), "STATE_DIR": str(scratch / "ceiling-state")},
        )
        cache_model(model_dir, scratch / "ceiling-state", run_id)
        if not args.no_mlserver:
            executable = mlserver_peer.ensure_venv(settings.state_dir)
            folder = mlserver_peer.model_folder(
                model_dir, scratch / "mlserver", mlserver_port, free_port(), free_port()
            )
            mlserver.log = scratch / "mlserver.log"
            mlserver.process = start_process(
                pinned(mlserver_peer.command(executable, folder), SERVER_CORE), mlserver.log
            )
        wait_for_http(f"http://127.0.0.1:{ours_port}/v2/health/ready", 180, ours.process, ours.log)
        wait_for_http(f"http://127.0.0.1:{ceiling_port}/health", 180, ceiling.process, ceiling.log)
        if not args.no_mlserver:
            wait_for_http(f"http://127.0.0.1:{mlserver_port}/v2/health/ready", 180, mlserver.process, mlserver.log)
        same_answer(ours, mlserver if not args.no_mlserver else None)
        if not args.no_mlserver:
            mlserver_client_answers(executable, ours, name, records[0][0])
        for server in servers:  # warm: first requests, caches, the SQLite log's first pages
            run_wrk(server.url, server.bodies, scratch, 2, args.connections, core=CLIENT_CORE)

        for _ in range(args.rounds):
            for server in servers:
                run = run_wrk(server.url, server.bodies, scratch, args.seconds, args.connections, core=CLIENT_CORE)
                server.saturation.append(run)
        print_saturation(servers)

        # paced runs, interleaved over the rounds: a single p99 moved 3-15 ms run to run on these machines
        paced = [(server.name, server, 0.7 * server.throughput) for server in servers]
        if not args.no_mlserver:
            paced.append(("ours at MLServer's 70% rate", ours, 0.7 * mlserver.throughput))
        loaded: dict[str, list[Wrk]] = {name: [] for name, _, _ in paced}
        for _ in range(args.rounds):
            for name, server, rate in paced:
                loaded[name].append(
                    run_wrk(
                        server.url,
                        server.bodies,
                        scratch,
                        args.load_seconds,
                        args.connections,
                        rate=rate,
                        core=CLIENT_CORE,
                    )
                )
        print_loaded(loaded)
        print_goals(ours, ceiling, None if args.no_mlserver else mlserver, loaded)
        if args.profile:
            pid = worker_pid(ours.process.pid)
            print(f"\npy-spy on our worker (pid {pid}) during a {args.seconds:.0f} s saturation run:")
            import threading

            found: list[Any] = []
            spy = threading.Thread(target=lambda: found.extend(profile(pid, args.seconds, scratch / "profile.txt")))
            spy.start()
            profiled = run_wrk(ours.url, ours.bodies, scratch, args.seconds, args.connections, core=CLIENT_CORE)
            spy.join()
            print(f"({profiled.throughput:.0f} req/s while profiled; shares of the samples holding the GIL)")
            by_self, by_inclusive = found or ([], [])
            print(f"{'self':>6} {'incl.':>6}  function (file)")
            for function, own, inclusive in by_self[:15]:
                print(f"{own:>6.1%} {inclusive:>6.1%}  {function}")
            print(f"\n{'incl.':>6}  function (file), by inclusive time")
            for function, inclusive in by_inclusive[:30]:
                print(f"{inclusive:>6.1%}  {function}")
    except BaseException:
        for server in servers:
            if server.log and server.log.exists():
                tail = server.log.read_text(errors="replace")[-3000:]
                print(f"--- last lines of {server.log.name}:\n{tail}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            if server.process is not None:
                stop_process(server.process, 20)
        shutil.rmtree(scratch, ignore_errors=True)


def same_answer(ours: Server, mlserver: Server | None) -> None:
    """The servers are compared on the same answer: our V2 churn chance equals MLServer's prediction (1e-6)."""
    a = requests.post(ours.url, data=ours.bodies[0], headers={"Content-Type": "application/json"}, timeout=10)
    a.raise_for_status()
    chance = a.json()["outputs"][0]["data"][0]
    if mlserver is None:
        print(f"same record: ours {chance:.6f}")
        return
    b = requests.post(mlserver.url, data=mlserver.bodies[0], headers={"Content-Type": "application/json"}, timeout=10)
    b.raise_for_status()
    theirs = b.json()["outputs"][0]["data"][0]
    print(f"same record: ours {chance:.6f}, MLServer {theirs:.6f}")
    if abs(chance - theirs) > 1e-6:
        raise SystemExit("the two servers disagree on the same record: not the same model")


def mlserver_client_answers(mlserver_executable: Path, ours: Server, name: str, record: dict[str, Any]) -> None:
    """MLServer's own client codec (PandasCodec, in its venv) calls our server unchanged: shown, not assumed."""
    python = mlserver_executable.parent / "python"
    script = ROOT / "bench" / "mlserver_client.py"
    base = ours.url.split("/v2/")[0]
    finished = subprocess.run(
        [str(python), str(script), base, name],
        input=json.dumps([record]),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if finished.returncode != 0:
        raise SystemExit(f"MLServer's client could not call us:\n{finished.stderr[-2000:]}")
    print(f"MLServer's PandasCodec request, answered by ours: {finished.stdout.strip()}")


def print_saturation(servers: list[Server]) -> None:
    print(f"\nsaturation (closed loop), {len(servers[0].saturation)} round(s) each:")
    print(f"{'server':<24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'wrk cpu':>8}")
    for server in servers:
        for run in server.saturation:
            print(
                f"{server.name:<24} {run.throughput:>9.0f} {run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>7} "
                f"{run.cpu_share:>8.0%}"
            )
    print(f"  command: {servers[0].saturation[0].command}")


def print_loaded(loaded: dict[str, list[Wrk]]) -> None:
    print("\n~70% of each server's saturation (paced), every round:")
    print(f"{'server':<30} {'target':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9':>8} {'errors':>7}")
    for name, runs in loaded.items():
        for run in runs:
            target = run.command.split("WRK_RATE=")[1].split()[0] if "WRK_RATE=" in run.command else "-"
            print(
                f"{name:<30} {target:>7} {run.throughput:>8.0f} {run.p50_ms:>8.2f} {run.p99_ms:>8.2f} "
                f"{run.p999_ms:>8.2f} {run.errors:>7}"
            )
    print(f"  command: {next(iter(loaded.values()))[0].command}")


def median_p99(runs: list[Wrk]) -> float:
    return statistics.median(run.p99_ms for run in runs)


def print_goals(ours: Server, ceiling: Server, mlserver: Server | None, loaded: dict[str, list[Wrk]]) -> None:
    print("\nratios (median saturation throughput):")
    to_ceiling = ours.throughput / ceiling.throughput
    verdict = "meets" if to_ceiling >= GOAL_VS_CEILING else "short of"
    print(f"  ours / ceiling  = {to_ceiling:.2f} ({verdict} the goal >= {GOAL_VS_CEILING})")
    if mlserver is not None:
        ratio = ours.throughput / mlserver.throughput
        ours_p99 = median_p99(loaded["ours at MLServer's 70% rate"])
        theirs_p99 = median_p99(loaded[mlserver.name])
        verdict = "meets" if ratio >= GOAL_VS_MLSERVER and ours_p99 <= theirs_p99 else "short of"
        print(
            f"  ours / MLServer = {ratio:.2f}, median p99 at MLServer's 70% rate: ours {ours_p99:.2f} ms vs MLServer "
            f"{theirs_p99:.2f} ms ({verdict} the goal >= {GOAL_VS_MLSERVER}x at <= its p99)"
        )
        own = median_p99(loaded[ours.name])
        print(f"  p99 at each one's own 70%: ours {own:.2f} ms, MLServer {theirs_p99:.2f} ms")
    busiest = max((w.cpu_share for s in (ours, ceiling) for w in s.saturation), default=0)
    print(
        f"  the client is not the limit: the ceiling reached {ceiling.throughput:.0f} req/s "
        f"({ceiling.throughput / ours.throughput:.1f}x ours) with wrk at most {busiest:.0%} of its core"
    )


if __name__ == "__main__":
    main()
