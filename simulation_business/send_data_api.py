"""Act like the business over HTTP: POST records sampled from the feature store to the predict API, one per interval.

    python -m simulation_business.send_data_api --count 5 --interval 1           # 5 requests, one a second
    python -m simulation_business.send_data_api --batch 20 --drift --interval 5  # drifted batches, for the dashboards
    python -m simulation_business.send_data_api --batch 20 --interval 1 --outcome-delay 30 --label-noise 0.1
                                                    # and each record's outcome 30 s later (10% of labels flipped)

The URL defaults to http://API_HOST:API_PORT/predict from settings. A down API is reported (naming the setting) and
the sender keeps going, as a business client would; with --count the exit code says whether every request succeeded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests

from mlops.settings import Settings
from simulation_business.options import (
    add_outcome_options,
    add_traffic_options,
    parse_traffic_args,
    settings_and_spec,
)
from simulation_business.outcomes import sender_from_args
from simulation_business.sampling import new_request_id, sample
from simulation_business.source import load_pool

API_KEY_HEADER = "X-API-Key"
REQUEST_ID_HEADER = "X-Request-ID"


def default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "", "::") else settings.api_host
    return f"http://{host}:{settings.api_port}/predict"


def send_once(
    session: requests.Session,
    url: str,
    records: list[dict[str, Any]],
    api_key: str | None,
    timeout: float,
    request_id: str | None = None,
) -> tuple[bool, str]:
    """POST one record (or a list for a batch) under `request_id` (default: a new one); (ok, a line to print)."""
    request_id = request_id or new_request_id()
    headers = {REQUEST_ID_HEADER: request_id}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    body: Any = records[0] if len(records) == 1 else records
    try:
        response = session.post(url, json=body, headers=headers, timeout=timeout)
    except requests.ConnectionError:
        return False, f"predict API unreachable at {url}: start it (make setup-model-serve) or fix API_HOST/API_PORT"
    except requests.Timeout:
        return False, f"predict API at {url} did not answer within {timeout:g}s"
    if response.status_code != 200:
        return False, f"{request_id} HTTP {response.status_code}: {response.text[:300]}"
    try:
        answer = response.json()
    except ValueError:
        return False, f"{request_id} HTTP 200 but not JSON: {response.text[:200]}"
    answers = answer if isinstance(answer, list) else [answer]
    chances = ", ".join(f"{a.get('churn chance', float('nan')):.4f}" for a in answers[:5] if isinstance(a, dict))
    more = f" (+{len(answers) - 5} more)" if len(answers) > 5 else ""
    run = answers[0].get("model_run_id", "?") if answers and isinstance(answers[0], dict) else "?"
    return True, f"{request_id} {len(answers)} record(s): churn chance {chances}{more}; model {run}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulation_business.send_data_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_traffic_options(parser, "request")  # --batch > 1 sends a JSON list
    parser.add_argument("--url", default=None, help="predict endpoint (default http://API_HOST:API_PORT/predict)")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    add_outcome_options(parser)
    args = parse_traffic_args(parser, argv)
    loaded = settings_and_spec("send_data_api", args.env)
    if loaded is None:
        return 2
    settings, spec = loaded
    pool = load_pool(settings, spec, args.drift, args.drift_strength, args.seed)
    url = args.url or default_url(settings)
    print(f"sending {args.batch} record(s) every {args.interval:g}s to {url} from {pool.origin}", flush=True)
    rng = np.random.default_rng(args.seed)
    outcomes = sender_from_args(args, url, spec, pool.labels, settings.api_key)
    session = requests.Session()
    sent = failed = 0
    try:
        while not args.count or sent < args.count:
            request_id = new_request_id()
            records = sample(pool.records, args.batch, rng)
            ok, line = send_once(session, url, records, settings.api_key, args.timeout, request_id)
            sent += 1
            failed += not ok
            print(line, file=sys.stdout if ok else sys.stderr, flush=True)
            if outcomes is not None:
                if ok:
                    outcomes.remember(request_id, records)
                outcomes.send_due(session)
            if args.count and sent >= args.count:
                break
            time.sleep(args.interval)
        if outcomes is not None:
            outcomes.wait_and_send_rest(session)
    except KeyboardInterrupt:
        pass
    summary: dict[str, Any] = {"sent": sent, "failed": failed}
    if outcomes is not None:
        summary |= outcomes.summary()
    print(json.dumps(summary), flush=True)
    return 1 if failed or (outcomes is not None and outcomes.totals["failed"]) else 0


if __name__ == "__main__":
    sys.exit(main())
