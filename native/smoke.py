"""The last step of `make up`: one real prediction over HTTP, printed with the curl command that makes it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

import requests

from mlops.data import clean, generate_bank_churners
from mlops.settings import load_settings
from mlops.spec import FeatureSpec


def sample_record(spec: FeatureSpec, seed: int = 2024) -> dict[str, object]:
    frame = clean(generate_bank_churners(1, seed=seed), spec, require_target=False)[spec.feature_columns]
    record = frame.astype(object).where(frame.notna(), None).iloc[0].to_dict()
    return {
        k: (int(v) if isinstance(v, float) and v.is_integer() and spec.column_kind(k) == "numeric" else v)
        for k, v in record.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m native.smoke", description="POST one record to /predict.")
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    args = parser.parse_args(argv)
    settings = load_settings(args.env)
    spec = FeatureSpec.load(settings.feature_spec)
    body = json.dumps(sample_record(spec))
    url = f"http://localhost:{settings.api_port}/predict"
    headers = {"Content-Type": "application/json"}
    if settings.api_key:
        headers["x-api-key"] = settings.api_key
    request_file = settings.state_dir / "sample-request.json"
    request_file.parent.mkdir(parents=True, exist_ok=True)
    request_file.write_text(body)
    key_header = " -H 'x-api-key: $API_KEY'" if settings.api_key else ""
    print(
        f"$ curl -s -X POST {url} -H 'Content-Type: application/json'{key_header} -d @{shlex.quote(str(request_file))}"
    )
    try:
        response = requests.post(url, data=body, headers=headers, timeout=10)
    except requests.RequestException as error:
        print(f"smoke: the API is not answering at {url} (setting API_PORT): {error}", file=sys.stderr)
        return 2
    print(response.text.strip())
    if response.status_code != 200:
        print(f"smoke: /predict answered {response.status_code}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
