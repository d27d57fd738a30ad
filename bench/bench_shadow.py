"""What shadow scoring costs /predict: the same gunicorn API with and without SHADOW_MODEL, same model files, same
client, same run.

    .venv/bin/python -m bench.bench_shadow --model-dir DIR      # a downloaded MLflow model folder (live and shadow)
    .venv/bin/python -m bench.bench_shadow                      # the model RUN_ID / alias names (MLflow)

Closed loop at saturation for each, then an open loop at 70% of the plain server's saturation for both (latency
counted from each request's scheduled time). The shadow is the same booster under another run id, so the extra work
is exactly one more scoring and one more log entry per record, off the request path.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Target, bench_model, cache_model, closed_loop, open_loop, sample_records  # noqa: E402
from native.throwaway import VENV_BIN, free_port, start_process, stop_process, wait_for_http  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--max-seconds", type=float, default=15)
    parser.add_argument("--load-seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    from mlops.model import ModelBundle
    from mlops.settings import load_settings

    settings = load_settings()
    workers = args.workers or settings.api_workers
    scratch = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    model_dir, run_id = bench_model(args.model_dir, settings, scratch)
    shadow_id = f"{run_id}-shadow"
    for name in (run_id, shadow_id):
        cache_model(model_dir, scratch / "state", name)
    records = sample_records(ModelBundle.from_model_dir(model_dir).spec)
    bodies = [json.dumps(r).encode() for r in records]
    print(f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(
        f"model {run_id}; shadow = the same booster as {shadow_id}; {workers} worker(s); concurrency {args.concurrency}"
    )
    results = {}
    dead = free_port()
    for label, shadow in (("plain", ""), ("with shadow", shadow_id)):
        port = free_port()
        env = {
            "STATE_DIR": str(scratch / "state"),
            "PREDICTION_LOG_URI": f"sqlite:///{scratch / (label.replace(' ', '-') + '.sqlite')}",
            "RUN_ID": run_id,
            "SHADOW_MODEL": shadow,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{dead}",
            "API_PORT": str(port),
            "API_WORKERS": str(workers),
            "DRIFT_SERVICE_URL": "",
            "OMP_NUM_THREADS": "1",
        }
        log = scratch / f"{label.replace(' ', '-')}.log"
        process = start_process([str(VENV_BIN / "python"), "-m", "server.api"], log, env)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", 180, process, log)
            target = Target(label, port, "/predict", bodies)
            closed_loop(target, args.concurrency, 300, 30)
            saturated = closed_loop(target, args.concurrency, args.requests, args.max_seconds)
            rate = 0.7 * (results["plain"][0].throughput if "plain" in results else saturated.throughput)
            loaded = open_loop(target, rate, args.load_seconds, args.concurrency)
            results[label] = (saturated, loaded, rate)
        except BaseException:
            print(f"--- last lines of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            stop_process(process, 20)
    header = f"{'server':<14} {'sat req/s':>10} {'sat p50':>8} {'sat p99':>8} {'load req/s':>11} {'p50 ms':>7}"
    print(f"\n{header} {'p99 ms':>7}")
    for label, (saturated, loaded, _) in results.items():
        print(
            f"{label:<14} {saturated.throughput:>10.0f} {saturated.pct(0.5):>8.2f} {saturated.pct(0.99):>8.2f} "
            f"{loaded.throughput:>11.0f} {loaded.pct(0.5):>7.2f} {loaded.pct(0.99):>7.2f}"
        )
    (plain_sat, plain_load, _), (shadow_sat, shadow_load, _) = results["plain"], results["with shadow"]
    print(
        f"\nshadow cost: saturation throughput {shadow_sat.throughput / plain_sat.throughput:.2f}x; at the same "
        f"offered rate p50 {shadow_load.pct(0.5) - plain_load.pct(0.5):+.2f} ms, "
        f"p99 {shadow_load.pct(0.99) - plain_load.pct(0.99):+.2f} ms"
    )
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
