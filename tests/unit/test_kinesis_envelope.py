"""The Kinesis input envelope: what is accepted, and the field and reason of everything that is not."""

from __future__ import annotations

import base64
import json

import pytest

from server.kinesis.envelope import MAX_PARTITION_KEY, Envelope, EnvelopeError, parse_envelope, raw_text
from simulation_business.sampling import envelope as build_envelope

RECORD = {"customer_age": 45, "gender": "F"}


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def test_documented_envelope_is_parsed() -> None:
    assert parse_envelope(encode({"request_id": "r-1", "record": RECORD})) == Envelope("r-1", RECORD)


def test_integer_request_id_becomes_text() -> None:
    assert parse_envelope(encode({"request_id": 17, "record": RECORD})).request_id == "17"


def test_original_design_envelope_is_accepted() -> None:
    assert parse_envelope(encode({"customer_id": 768805383, "customer": RECORD})) == Envelope("768805383", RECORD)


def test_the_simulator_builds_what_the_consumer_reads() -> None:
    built = build_envelope(RECORD)
    parsed = parse_envelope(encode(built))
    assert parsed.record == RECORD
    assert parsed.request_id == built["request_id"] and len(parsed.request_id) == 32


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"\xff\xfe\x00garbage", "(data)", "not UTF-8"),
        (b"{not json", "(data)", "not JSON"),
        (b"", "(data)", "not JSON"),
        (encode([RECORD]), "(envelope)", "must be a JSON object, got list"),
        (encode(RECORD), "request_id", "missing"),
        (encode({"record": RECORD}), "request_id", "missing"),
        (encode({"request_id": "", "record": RECORD}), "request_id", "must not be empty"),
        (encode({"request_id": "   ", "record": RECORD}), "request_id", "must not be empty"),
        (encode({"request_id": True, "record": RECORD}), "request_id", "string or an integer"),
        (encode({"request_id": {"a": 1}, "record": RECORD}), "request_id", "string or an integer"),
        (encode({"request_id": "x" * (MAX_PARTITION_KEY + 1), "record": RECORD}), "request_id", "at most 256"),
        (encode({"request_id": "r", "record": RECORD, "extra": 1}), "extra", "unknown envelope field"),
        (encode({"request_id": "r"}), "record", "missing"),
        (encode({"customer_id": 5}), "customer", "missing"),
    ],
)
def test_bad_envelopes_name_field_and_reason(data: bytes, field: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_request_id_is_kept_when_only_the_record_is_missing() -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(encode({"request_id": "keep-me"}))
    assert caught.value.request_id == "keep-me"


def test_raw_text_keeps_text_and_base64_encodes_binary() -> None:
    assert raw_text(b'{"a": 1}') == ('{"a": 1}', "utf-8")
    text, encoding = raw_text(b"\xff\x00\x01")
    assert encoding == "base64" and base64.b64decode(text) == b"\xff\x00\x01"
