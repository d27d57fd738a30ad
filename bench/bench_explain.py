"""POST /predict with and without reasons (`?explain=3`), side by side on one server in one run.

    .venv/bin/python -m bench.bench_explain                    # model: RUN_ID / alias from MLflow, else trained here
    .venv/bin/python -m bench.bench_explain --model-dir DIR    # a downloaded MLflow model folder

One API worker pinned to core 0 (the whole platform path: validation, encoding, the SQLite prediction log, metrics),
wrk on core 1, one record per request carrying a customer id; the two URLs alternate for `--rounds` rounds of
`--seconds` each, so drift on a shared machine hits both alike. Prints requests/s, p50 and p99 of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_model, cache_model, sample_records  # noqa: E402
from bench.loadgen import pinned, run_wrk  # noqa: E402
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http  # noqa: E402

SERVER_CORE, CLIENT_CORE = 0, 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="a downloaded MLflow model folder")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument("--connections", type=int, default=4, help="wrk keep-alive connections")
    parser.add_argument("--explain", default="3", help="reasons asked for in the second variant")
    args = parser.parse_args()

    from mlops.model import ModelBundle
    from mlops.settings import load_settings

    settings = load_settings()
    scratch = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    cache_model(model_dir, scratch / "state", run_id)
    bundle = ModelBundle.from_model_dir(model_dir)
    id_column = bundle.spec.id_column or "clientnum"
    bodies = [
        json.dumps({**record, id_column: str(700_000_000 + i)}).encode()
        for i, record in enumerate(sample_records(bundle.spec))
    ]
    port, dead = free_port(), free_port()
    env = {
        "STATE_DIR": str(scratch / "state"),
        "RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead}",
        "API_WORKERS": "1",
        "API_PORT": str(port),
        "DRIFT_SERVICE_URL": "",
        "OMP_NUM_THREADS": "1",
    }
    log = scratch / "api.log"
    process = start_process(pinned([str(VENV_BIN / "python"), "-m", "server.api"], SERVER_CORE), log, env)
    print(
        f"model {run_id} ({bundle.booster.num_boosted_rounds()} trees); {len(bodies)} records with ids; one worker on "
        f"core {SERVER_CORE}; wrk on core {CLIENT_CORE}; {args.connections} connections",
        flush=True,
    )
    plain_url = f"http://127.0.0.1:{port}/predict"
    variants = {"plain": plain_url, f"explain={args.explain}": f"{plain_url}?explain={args.explain}"}
    runs: dict[str, list] = {name: [] for name in variants}
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 180, process, log)
        for url in variants.values():  # warm-up: the first calls load and compile
            run_wrk(url, bodies, scratch, 2, args.connections, core=CLIENT_CORE)
        for _ in range(args.rounds):
            for name, url in variants.items():
                result = run_wrk(url, bodies, scratch, args.seconds, args.connections, core=CLIENT_CORE)
                if result.errors:
                    print(f"  {name}: {result.errors} errors (see {log})")
                runs[name].append(result)
    finally:
        stop_process(process)
    figures = {}
    for name, results in runs.items():
        rps = statistics.median(r.throughput for r in results)
        p50 = statistics.median(r.p50_ms for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        figures[name] = rps
        print(f"{name:>12}: {rps:8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (median of {len(results)} runs)")
        print(f"{'':>14}{results[-1].command}")
    plain, explained = figures.values()
    print(f"explain/plain throughput ratio: {explained / plain:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
