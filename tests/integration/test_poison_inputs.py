"""No input of any shape stops a pipeline (issue 22): hypothesis over arbitrary JSON and bytes, on real servers.

Not schema-guided like test_fuzz_api.py: bodies are any JSON value (deep nesting, huge strings, every Unicode class
including lone surrogates, NaN and Infinity tokens, integers past 64 bits, wrong types) or raw bytes, and valid
records with one field replaced by such a value. Sent to a real gunicorn API (`/predict`, V2 infer, `/outcomes`,
`/customers/<id>/churn`, `/admin/reload`) and, as Kinesis Data, to a real consumer on moto.

Invariants after each run: no 5xx; every prediction answered 200 is in the log exactly as often as it was answered
(counted by request id), nothing was quarantined or left in the spool (the door refuses what no store can hold);
the consumer wrote a result or a dead letter for every record it was sent, and still answers a good record within
seconds. The counts tried are printed (-s).
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.stores.quarantine import Quarantine, quarantine_dir
from native.throwaway import stop_process
from tests.support.api import ApiServer, start_api
from tests.support.kinesis import Consumer, make_streams, put_envelopes, read_stream, wait_until

pytestmark = pytest.mark.integration

EXAMPLES = 120
# every Unicode class, lone surrogates and NUL included (st.text never yields surrogates: join characters instead)
CHARACTERS = (
    st.characters(codec=None)
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    | st.sampled_from(["\x00", "\ufeff", "\u2028", "\U0010ffff"])
)
TEXT = st.lists(CHARACTERS, max_size=40).map("".join)
HUGE = st.integers(min_value=1_000, max_value=150_000).map(lambda n: "x" * n)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def body_of(value: Any) -> bytes:
    """JSON text as a client may send it: NaN tokens, lone surrogates as \\u escapes."""
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn, good: list[dict[str, Any]]) -> bytes:
    kind = draw(st.sampled_from(["json", "mutated", "mutated", "id", "id", "bytes", "deep", "huge"]))
    if kind == "id":  # a valid record whose customer id is any text or number: a 200 to log, or a 422
        record = {**draw(st.sampled_from(good)), "CLIENTNUM": draw(TEXT | st.integers(-(2**70), 2**70))}
        return body_of(draw(st.sampled_from([record, [record, good[1]]])))
    if kind == "json":
        return body_of(draw(JSON))
    if kind == "mutated":  # a valid record (or a batch of them) with one field's value or name replaced
        record = dict(draw(st.sampled_from(good)))
        field = draw(st.sampled_from([*record, "CLIENTNUM", draw(TEXT)]))
        record[field] = draw(JSON)
        return body_of(draw(st.sampled_from([record, [record], [good[0], record]])))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        return deep(draw(st.integers(min_value=500, max_value=60_000)))
    return body_of({"CLIENTNUM": draw(HUGE)})


@pytest.fixture(scope="module")
def api(service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_api(service_env, tmp_path_factory.mktemp("poison-api"), workers=1)
    yield server
    stop_process(server.process, timeout=30)


def answered_records(path: str, body: bytes, answer: Any) -> int:
    """How many predictions a 200 answer holds (what the log must then hold under its request id)."""
    if path == "/predict":
        parsed = answer.json()
        return len(parsed) if isinstance(parsed, list) else 1
    if "/infer" in path:
        return len(answer.json()["outputs"][0]["data"])
    if path.startswith("/customers/"):
        return 1
    return 0


def hammer(api: ApiServer, path: str, strategy: Any, examples: int, answered: Counter[str]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    with requests.Session() as session:
        # a connection per body: under a loaded machine a reused keep-alive connection was once closed by gunicorn
        # (26.x gthread) as the next body went out (RemoteDisconnected, not reproducible): a transport race this
        # test is not about, and one it cannot retry without counting an answered body twice
        session.headers["Connection"] = "close"

        @settings(
            max_examples=examples, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(body=strategy)
        def one(body: bytes) -> None:
            request_id = uuid.uuid4().hex
            target = path
            if path == "/customers/{id}/churn":
                target = f"/customers/{requests.utils.quote(body[:300], safe='')}/churn"  # any bytes, percent-encoded
            answer = session.request(
                "GET" if target.startswith("/customers/") else "POST",
                f"{api.url}{target}",
                data=None if target.startswith("/customers/") else body,
                headers={"Content-Type": "application/json", "X-Request-ID": request_id},
                timeout=30,
            )
            statuses[answer.status_code] += 1
            assert answer.status_code < 500, (path, body[:300], answer.text[:300])
            if answer.status_code >= 400:
                assert answer.json()["reason"], answer.text
            elif answer.status_code == 200:
                answered[request_id] += answered_records(path, body, answer)

        one()
    print(f"\n{path}: {sum(statuses.values())} bodies, statuses {dict(sorted(statuses.items()))}")
    return statuses


def test_no_body_gets_a_5xx_and_every_answer_is_logged(api: ApiServer, sample_records: list[dict[str, Any]]) -> None:
    answered: Counter[str] = Counter()
    good = sample_records[:20]
    v2 = st.builds(
        lambda name, datatype, shape, data: body_of(
            {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}
        ),
        st.sampled_from(list(good[0])) | TEXT,
        JSON,
        JSON,
        JSON,
    ) | bodies(good)
    outcomes = st.builds(
        lambda id_, label, when: body_of({"CLIENTNUM": id_, "label": label, "observed_at": when}), JSON, JSON, JSON
    ) | bodies(good)
    hammer(api, "/predict", bodies(good), EXAMPLES, answered)
    hammer(api, "/v2/models/churn-model/infer", v2, EXAMPLES, answered)
    hammer(api, "/outcomes", outcomes, EXAMPLES // 2, answered)
    hammer(
        api,
        "/customers/{id}/churn",
        st.binary(max_size=200) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
        EXAMPLES // 2,
        answered,
    )
    hammer(api, "/admin/reload", bodies(good), 8, answered)
    # the log holds each answered prediction exactly once per record answered, and nothing was set apart
    store = api.store()
    wait_until(lambda: store.count() >= sum(answered.values()), 30, "every answered prediction logged")
    logged = Counter(e["request_id"] for e in store.read(datetime(2000, 1, 1, tzinfo=UTC), None, None))
    assert {k: v for k, v in logged.items() if k in answered} == {k: v for k, v in answered.items() if v}
    assert Quarantine(quarantine_dir(api.state_dir, "prediction-log")).count() == 0
    assert not any((api.state_dir / "spool" / "prediction-log").glob("*.jsonl"))
    health = requests.get(f"{api.url}/health", timeout=5).json()
    assert health["status"] == "ok", health
    assert "Traceback" not in api.log.read_text(errors="replace")
    print(f"{sum(answered.values())} predictions answered 200, all {sum(answered.values())} logged")


def test_no_kinesis_record_stops_the_consumer(
    kinesis: Any, consumer_env: dict[str, str], sample_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    streams = make_streams(kinesis, shards=1)
    state = tmp_path / "consumer"
    consumer = Consumer({**consumer_env, **streams.env(), "STATE_DIR": str(state)}, state)
    sent: list[bytes] = []
    good = sample_records[:20]

    def envelope(record: dict[str, Any], field: str, value: Any) -> bytes:
        """An envelope of a valid record with one field (or its id) replaced: scored, or dead-lettered."""
        return body_of({"request_id": uuid.uuid4().hex, "record": {**record, field or "CLIENTNUM": value}})

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=bodies(good) | st.builds(envelope, st.sampled_from(good), TEXT, JSON | TEXT))
    def collect(data: bytes) -> None:
        sent.append(data[:1_000_000] or b" ")  # Kinesis refuses empty Data and records past 1 MB

    try:
        collect()
        for start in range(0, len(sent), 100):
            put_envelopes(kinesis, streams.predictions, sent[start : start + 100])
        good = {"request_id": "good-after-poison", "record": sample_records[0]}
        put_envelopes(kinesis, streams.predictions, [good])

        def answered() -> bool:
            return any(r["request_id"] == "good-after-poison" for r in read_stream(kinesis, streams.results))

        wait_until(answered, 60, f"the good record answered after the poison; log:\n{consumer.tail()}")
        results = read_stream(kinesis, streams.results)
        letters = read_stream(kinesis, streams.dead_letters)
        assert len(results) + len(letters) == len(sent) + 1, (len(results), len(letters), len(sent))
        assert all(letter["reason"] for letter in letters)
        assert consumer.process.poll() is None, consumer.tail()
        reasons = Counter(letter["reason"].split(":")[0] for letter in letters)
        assert not [r for r in reasons if r.startswith("internal")], reasons  # no record reached a bug
        assert len(results) > 1, "some generated envelopes are valid and must be scored"
        print(f"\nkinesis: {len(sent)} generated records, {len(results) - 1} scored, {len(letters)} dead letters")
        assert math.isclose(consumer.metric("kinesis_records_in_total"), len(sent) + 1)
    finally:
        consumer.terminate()
