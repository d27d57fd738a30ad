"""mlops.json_text: orjson where it takes a body, the standard library's answer for every body all the same; the
prediction log's ids; the metrics' cached pid across a fork."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.json_text import dumps as answer_json
from mlops.json_text import loads as parse_json
from mlops.stores.ids import new_id


def _outcome(parse: Any, raw: bytes) -> tuple[str, str]:
    """What a parse gives, comparable across parsers: the value's repr (NaN-safe, int vs float visible) or the
    exception's type and message."""
    try:
        return "value", repr(parse(raw))
    except (ValueError, RecursionError) as error:
        return type(error).__name__, str(error)


EDGE_BODIES = [
    b'{"credit_limit": NaN}',
    b'{"credit_limit": Infinity}',
    b'{"customer_age": 123456789012345678901234567890}',  # orjson: a float; the standard library: the int
    b'{"clientnum": -9223372036854775809}',
    b'{"clientnum": 18446744073709551615}',
    b'{"x": 1e400}',
    b'{"gender": "\\ud800"}',  # a lone surrogate
    "\ufeff{}".encode(),  # a byte-order mark
    '{"gender": "F"}'.encode("utf-16"),
    b"[" * 5000 + b"]" * 5000,
    b'{"a": 1, "a": 2}',
    b"[1, 2,]",
    b"",
    b"   ",
    b'{"x": 0.1, "y": -0.0, "z": 1E5}',
    b'"\xff"',
]


@pytest.mark.parametrize("raw", EDGE_BODIES, ids=range(len(EDGE_BODIES)))
def test_every_edge_body_parses_as_the_standard_library_parses_it(raw: bytes) -> None:
    assert _outcome(parse_json, raw) == _outcome(json.loads, raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, mangle=st.sampled_from(["as is", "cut", "spaced"]))
def test_any_body_parses_as_the_standard_library_parses_it(value: Any, mangle: str) -> None:
    raw = json.dumps(value).encode()  # NaN and Infinity tokens included: json.dumps writes them
    if mangle == "cut":
        raw = raw[: max(0, len(raw) // 2)]
    elif mangle == "spaced":
        raw = b" \n" + raw + b"\t "
    assert _outcome(parse_json, raw) == _outcome(json.loads, raw)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_answers_say_what_json_dumps_says(value: Any) -> None:
    def same(a: Any) -> str:
        return repr(a) if not (isinstance(a, float) and math.isnan(a)) else "nan"

    written = answer_json(value)
    assert isinstance(written, bytes)
    if "NaN" in json.dumps(value) or "Infinity" in json.dumps(value):
        return  # orjson writes null where json.dumps writes tokens that are not JSON; no answer holds either
    assert same(json.loads(written)) == same(json.loads(json.dumps(value)))


def test_an_answer_orjson_refuses_is_written_by_the_standard_library() -> None:
    for value in ({"id": "\ud800"}, {"clientnum": 10**30}):
        assert json.loads(answer_json(value)) == value


def test_new_id_is_a_version_7_uuid_in_time_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 2000
    for text in ids[:200]:
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant, parsed.hex) == (7, uuid.RFC_4122, text)
        assert before <= parsed.int >> 80 <= after  # its first 48 bits: the Unix time in milliseconds
    time.sleep(0.002)
    assert new_id() > max(ids)  # a later id sorts after: the log's B-trees grow at one end


def test_a_forked_worker_counts_into_its_own_metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """server.gunicorn_app caches the pid prometheus_client checks on every inc; a forked worker must still get its
    own multiprocess file, and /metrics must add up both processes."""
    from prometheus_client import CollectorRegistry, Counter, multiprocess, values

    from server import gunicorn_app

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    gunicorn_app.use_cached_pid_for_metrics()
    counter = Counter("forked_total", "calls", registry=CollectorRegistry())
    counter.inc()
    child = os.fork()
    if child == 0:  # the worker: five calls, then out at once
        counter.inc(5)
        os._exit(0)
    os.waitpid(child, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{os.getpid()}.db", f"counter_{child}.db"])
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("forked_total") == 6
