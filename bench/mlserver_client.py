"""Run by MLServer's own venv (bench.mlserver_peer): MLServer's client-side codec encodes a data frame of records
(JSON on stdin) as a V2 request, which is POSTed to our server unchanged; prints the answer's outputs.

    <mlserver venv>/bin/python bench/mlserver_client.py URL MODEL < records.json
"""

import json
import sys
import urllib.request

import pandas as pd
from mlserver.codecs import PandasCodec


def main() -> None:
    url, model = sys.argv[1], sys.argv[2]
    frame = pd.DataFrame(json.load(sys.stdin))
    for column in frame.columns:  # mlserver 1.7.1 encodes text columns of dtype object, not pandas 3's str
        if frame[column].dtype.kind not in "iufb":
            frame[column] = frame[column].astype(object)
    body = PandasCodec.encode_request(frame, use_bytes=False).model_dump_json(exclude_none=True).encode()
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(json.dumps(json.loads(answer.read())["outputs"]))


if __name__ == "__main__":
    main()
