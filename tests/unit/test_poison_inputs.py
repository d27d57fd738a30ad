"""No input stops a pipeline (issue 22): text no store can hold is refused where it comes in, a batch a store
refuses is bisected to the entries at fault (quarantined) while the rest is written, and threads are supervised.

The real-server proofs (gunicorn + SQLite, moto's Kinesis) are tests/integration/test_poison_inputs.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.runner import run_batch
from batch.testing import tiny_bundle, write_account_files
from mlops.contract import DataError
from mlops.contract.rules import MAX_ID_CHARS
from mlops.contract.text import TextError, find_bad_text, loads_text, text_problem
from mlops.model_service import ModelService
from mlops.outcomes import Outcome, read_outcomes_file
from mlops.quarantine import main as quarantine_main
from mlops.settings import load_settings
from mlops.stores.base import StoreUnavailable
from mlops.stores.outcomes import IngestReport, ingest_isolating
from mlops.stores.prediction_log import PredictionLog, SQLiteStore, make_entry
from mlops.stores.quarantine import Quarantine, write_isolating
from mlops.supervision import Supervised
from server.api import create_app
from server.kinesis.envelope import EnvelopeError, parse_envelope
from tests.support.records import GOOD, RecordingSink, tiny_service

SURROGATE_BODY = b'{"CLIENTNUM": "\\ud800"}'


@pytest.fixture(scope="module")
def service() -> ModelService:
    return tiny_service()


@pytest.fixture
def client(service: ModelService, tmp_path: Path) -> Any:
    settings = load_settings("local", state_dir=tmp_path, max_batch_records=5)
    return create_app(settings, service=service, sinks=[RecordingSink()]).test_client()


# ------------------------------------------------------------------------------------------- the text rule
@pytest.mark.parametrize(
    ("text", "reason"),
    [("\ud800", "lone surrogate U+D800 at character 0"), ("ab\x00", "NUL character (U+0000)"), ("a\udfffb", "U+DFFF")],
)
def test_text_no_store_can_hold_is_named(text: str, reason: str) -> None:
    problem = text_problem(text)
    assert problem is not None and reason in problem


def test_good_text_of_every_plane_passes() -> None:
    for text in ["", "plain", "é", "😀", "\u2028", "\U0010ffff", "tab\tnewline\n"]:
        assert text_problem(text) is None


def test_the_walk_names_the_path_and_survives_any_depth() -> None:
    deep: Any = "\ud800"
    for _ in range(50_000):
        deep = [deep]
    problem = find_bad_text({"a": [1, {"b": deep}]})
    assert problem is not None and problem.path[:3] == ("a", 1, "b") and len(problem.path) == 50_003
    key_problem = find_bad_text({"ok": {"\ud800": 1}})
    assert key_problem is not None and key_problem.field == "ok.(name)"


def test_loads_text_checks_what_orjson_cannot_have_refused() -> None:
    assert loads_text(b'{"a": "\\ud83d\\ude00"}') == {"a": "😀"}  # a surrogate pair is one good character
    with pytest.raises(TextError) as raised:
        loads_text(b'[{"x": 1}, {"x": "a\\u0000"}]')
    assert raised.value.field == "[1].x"
    with pytest.raises(TextError):
        loads_text('{"x": "\ud800"}'.encode("utf-8", "surrogatepass"))  # raw bytes the stdlib would pass


# --------------------------------------------------------------------------------------------- HTTP (issue)
def test_a_lone_surrogate_customer_id_is_a_422_naming_the_field(client: Any) -> None:
    record = json.dumps(GOOD)[:-1] + ', "CLIENTNUM": "\\ud800"}'
    response = client.post("/predict", data=record, content_type="application/json")
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert body["field"] == "CLIENTNUM" and "lone surrogate" in body["reason"]
    batch = "[" + json.dumps(GOOD) + "," + record + "]"
    body = client.post("/predict", data=batch, content_type="application/json").get_json()
    assert (body["field"], body["index"]) == ("CLIENTNUM", 1)


def test_a_customer_id_is_bounded(client: Any) -> None:
    response = client.post("/predict", json={**GOOD, "CLIENTNUM": "9" * (MAX_ID_CHARS + 1)})
    assert response.status_code == 422 and response.get_json()["field"].lower() == "clientnum"
    assert "at most 128 characters" in response.get_json()["reason"]
    response = client.post("/predict", json={**GOOD, "CLIENTNUM": {"nested": 1}})
    assert response.status_code == 422 and "string or an integer" in response.get_json()["reason"]
    assert client.post("/predict", json={**GOOD, "CLIENTNUM": "7" * MAX_ID_CHARS}).status_code == 200


def test_outcomes_refuse_unstorable_text(client: Any) -> None:
    response = client.post(
        "/outcomes", data=b'{"CLIENTNUM": "1\\u0000", "label": "Attrited Customer"}', content_type="application/json"
    )
    assert response.status_code == 422 and response.get_json()["field"] == "CLIENTNUM"


def test_a_v2_datatype_that_is_not_a_string_is_a_400(client: Any) -> None:
    body = {"inputs": [{"name": "customer_age", "shape": [0], "datatype": {}, "data": [None, None]}]}
    response = client.post("/v2/models/churn-model/infer", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == "inputs[0].datatype"
    one_row = {"inputs": [{"name": "customer_age", "shape": [1], "datatype": ["FP64"], "data": [40]}]}
    assert client.post("/v2/models/churn-model/infer", json=one_row).status_code == 400
    many = {"inputs": [{"name": "customer_age", "shape": [2], "datatype": {"a": 1}, "data": [40, 41]}]}
    assert client.post("/v2/models/churn-model/infer", json=many).status_code == 400


def test_a_v2_name_with_a_surrogate_is_a_422(client: Any) -> None:
    body = b'{"inputs": [{"name": "\\udc00", "shape": [1], "datatype": "FP64", "data": [1]}]}'
    response = client.post("/v2/models/churn-model/infer", data=body, content_type="application/json")
    assert response.status_code == 422 and response.get_json()["field"] == "inputs[0].name"


# ------------------------------------------------------------------------------------------- Kinesis (issue)
def test_deep_nesting_and_bad_text_in_kinesis_data_are_envelope_errors() -> None:
    with pytest.raises(EnvelopeError) as raised:
        parse_envelope(b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in raised.value.reason
    with pytest.raises(EnvelopeError) as raised:
        parse_envelope(b'{"request_id": "r1", "record": {"CLIENTNUM": "\\ud800"}}')
    assert raised.value.field == "record.CLIENTNUM"
    with pytest.raises(EnvelopeError) as raised:
        parse_envelope(b'{"request_id": "r1", "customer_id": "' + b"1" * 200 + b'"}')
    assert "at most 128" in raised.value.reason


# ------------------------------------------------------------------------------------------ isolation
class PickyStore:
    """A store that refuses entries whose request id starts with "bad" (as SQLite refuses a surrogate), and can be
    taken down."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.down = False
        self.calls = 0

    def write_many(self, entries: list[dict[str, Any]]) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("picky store is down")
        if any(e["request_id"].startswith("bad") for e in entries):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        self.rows.update({e["prediction_id"]: e for e in entries})

    def close(self) -> None:
        pass


def entries(ids: list[str]) -> list[dict[str, Any]]:
    return [make_entry(dict(GOOD), 0.5, "run", "http", rid) for rid in ids]


def test_bisection_writes_the_good_and_returns_the_bad_in_order() -> None:
    store = PickyStore()
    batch = entries([f"r{i}" for i in range(40)] + ["bad-1"] + [f"s{i}" for i in range(40)] + ["bad-2"])
    refused, unwritten = write_isolating(store.write_many, batch)
    assert [e["request_id"] for e, _ in refused] == ["bad-1", "bad-2"]
    assert "UnicodeEncodeError" in refused[0][1] and unwritten == []
    assert len(store.rows) == 80
    assert store.calls <= 2 * 2 * 7 + 1  # ~2k log2(n), not n


def test_bisection_hands_back_what_an_outage_left_unwritten() -> None:
    store = PickyStore()
    batch = entries(["r1", "bad", "r2", "r3"])
    calls = {"n": 0}

    def write(part: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            store.down = True
        store.write_many(part)

    refused, unwritten = write_isolating(write, batch)
    written = set(e["request_id"] for e in store.rows.values())
    assert written | {e["request_id"] for e, _ in refused} | {e["request_id"] for e in unwritten} == {
        "r1",
        "bad",
        "r2",
        "r3",
    }
    assert not written & {e["request_id"] for e in unwritten}


def test_one_unstorable_entry_never_blocks_the_log(tmp_path: Path) -> None:
    """The issue's case on the real SQLite store: a lone surrogate in an entry (as it was logged before the text
    rule) is quarantined; every other entry, before and after, is written; nothing is spooled."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    quarantine = Quarantine(tmp_path / "quarantine")
    log = PredictionLog(store, tmp_path / "spool", quarantine=quarantine, linger_s=0)
    bad = make_entry(dict(GOOD), 0.5, "run", "http", "r-bad", customer_id="\ud800")
    log.submit([*entries(["a1", "a2"]), bad, *entries(["a3"])])
    for i in range(20):
        log.submit(entries([f"later-{i}"]))
    assert log.flush(10)
    assert store.count() == 23 and log.quarantined == 1 and not log.spool.pending()
    (kept,) = list(quarantine.entries())
    assert kept["entry"]["customer_id"] == "\ud800" and "UnicodeEncodeError" in kept["reason"]
    assert quarantine.count() == 1
    log.close()


def test_a_spooled_batch_with_a_bad_entry_replays_the_rest(tmp_path: Path) -> None:
    store = PickyStore()
    store.down = True
    log = PredictionLog(store, tmp_path / "spool", quarantine=Quarantine(tmp_path / "q"), linger_s=0,
                        retry_interval_s=0.1)  # fmt: skip
    log.submit(entries(["r1", "bad", "r2"]))
    assert log.wait_durable(5) and log.spool.pending()
    assert any("unavailable" in p for p in log.problems())
    store.down = False
    assert log.flush(10)
    assert sorted(e["request_id"] for e in store.rows.values()) == ["r1", "r2"]
    assert log.quarantine.count() == 1 and not log.problems()
    log.close()


def test_a_quarantine_replays_what_the_store_now_takes(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q")
    quarantine.add([(e, "refused") for e in entries(["bad-1", "ok-now", "bad-2"])])
    store = PickyStore()
    assert quarantine.replay(store.write_many) == (1, 2)
    assert quarantine.count() == 2 and Quarantine(tmp_path / "q").count() == 2
    assert [line["entry"]["request_id"] for line in quarantine.entries()] == ["bad-1", "bad-2"]


def test_a_full_quarantine_counts_and_drops_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = PickyStore()
    log = PredictionLog(store, tmp_path / "spool", quarantine=Quarantine(tmp_path / "q", max_bytes=12_000), linger_s=0)
    for i in range(40):  # ~600 bytes a refused entry: the first ~20 are kept, the rest counted and dropped
        log.submit(entries([f"bad-{i}", f"ok-{i}"]))
        assert log.flush(5)
    kept, dropped = log.quarantine.count(), log.quarantine.dropped()
    assert kept + dropped == 40 and kept > 5 and dropped > 5 and log.quarantine.size() <= 12_000
    assert len(store.rows) == 40  # the good entries were all written
    assert any("quarantine" in p and f"{dropped} refused entries dropped" in p for p in log.problems())
    assert log.stats()["quarantine_dropped"] == dropped
    log.close()
    env = {"STATE_DIR": str(tmp_path / "state"), "QUARANTINE_MAX_BYTES": "12000"}
    folder = tmp_path / "state" / "quarantine" / "prediction-log"
    folder.parent.mkdir(parents=True)
    (tmp_path / "q").rename(folder)
    with patch.dict(os.environ, env):
        assert quarantine_main(["list"]) == 0
        assert f"{dropped} refused entries dropped while it was full" in capsys.readouterr().out
        assert quarantine_main(["clear"]) == 2  # not without --yes
        assert quarantine_main(["clear", "--yes"]) == 0
    assert Quarantine(folder).count() == 0 and Quarantine(folder).dropped() == 0


def test_an_unwritable_store_file_is_an_outage_and_a_bad_value_is_not(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    with pytest.raises((sqlite3.ProgrammingError, sqlite3.DataError)):  # a value it cannot bind: the entry's fault
        store.write_many([{**entries(["x"])[0], "request_id": object()}])
    (tmp_path / "blocked").mkdir()
    down = SQLiteStore(f"sqlite:///{tmp_path / 'blocked'}")  # a directory where the file should be
    with pytest.raises(StoreUnavailable):
        down.write_many(entries(["y"]))


# ------------------------------------------------------------------------------------------- supervision
def test_a_thread_that_raises_is_restarted_and_says_so() -> None:
    runs: list[int] = []
    done = threading.Event()

    def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        done.set()

    worker = Supervised("flaky", loop, backoff_s=0.01).start()
    assert done.wait(5)
    worker.join(5)
    assert worker.restarts == 2 and worker.last_error == "RuntimeError: boom 2"
    assert worker.problem() is None  # finished its work


def test_a_silent_or_dead_thread_is_a_problem() -> None:
    release = threading.Event()
    worker = Supervised("stuck", lambda: release.wait(10), backoff_s=0.01).start()
    time.sleep(0.05)
    assert "has not moved" in str(worker.problem(max_silence_s=0.01))
    release.set()
    worker.join(5)

    def dies() -> None:
        raise ValueError("always")

    failing = Supervised("dying", dies, backoff_s=0.01).start()
    time.sleep(0.1)
    assert "restarted" in str(failing.problem()) and failing.restarts >= 2
    failing.stop()


# ---------------------------------------------------------------------------------------------- files
FILE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(str.encode),
    st.lists(st.text(max_size=12), min_size=1, max_size=6).map(lambda cells: (",".join(cells) + "\n").encode() * 3),
    st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=FILE_BYTES, suffix=st.sampled_from([".csv", ".parquet"]))
def test_any_bytes_as_an_outcome_file_are_outcomes_or_a_named_error(data: bytes, suffix: str) -> None:
    spec = tiny_service().spec
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"outcomes{suffix}"
        path.write_bytes(data)
        try:
            read_outcomes_file(str(path), spec)
        except DataError as error:
            assert str(error)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=st.lists(st.tuples(FILE_BYTES, st.sampled_from([".csv", ".parquet"])), min_size=1, max_size=4))
def test_any_bytes_as_batch_files_are_rejected_by_name_and_the_good_file_is_scored(
    bad: list[tuple[bytes, str]],
) -> None:
    bundle = tiny_bundle()
    with tempfile.TemporaryDirectory() as folder:
        inputs, out = Path(folder) / "in", Path(folder) / "out"
        write_account_files(inputs, 1, 5)
        for i, (data, suffix) in enumerate(bad):
            (inputs / f"poison-{i}{suffix}").write_bytes(data)
        summary = run_batch(str(inputs), str(out), bundle, workers=1)
        assert summary.scored + summary.rejected == len(bad) + 1
        assert summary.scored >= 1  # the good file, whatever is beside it
        assert all(r["reason"] for r in summary.rejects)


def test_an_outcome_the_store_refuses_is_quarantined_and_the_rest_ingested(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path)

    class PickyOutcomes:
        def __init__(self) -> None:
            self.kept: list[Outcome] = []

        def ingest(self, outcomes: list[Outcome]) -> IngestReport:
            if any(o.customer_id == "bad" for o in outcomes):
                raise sqlite3.InterfaceError("Error binding parameter")
            report = IngestReport()
            for outcome in outcomes:
                self.kept.append(outcome)
                report.count("unknown", outcome)
            return report

    store = PickyOutcomes()
    now = datetime.now(UTC)
    outcomes = [Outcome(None, cid, 1, now) for cid in ["1", "2", "bad", "3"]]
    report = ingest_isolating(store, outcomes, settings)  # type: ignore[arg-type]
    assert (report.received, report.unknown, report.refused) == (4, 3, 1)
    assert [o.customer_id for o in store.kept] == ["1", "2", "3"]
    (kept,) = list(Quarantine(tmp_path / "quarantine" / "outcomes").entries())
    assert kept["entry"]["customer_id"] == "bad" and "InterfaceError" in kept["reason"]
    # the command writes it back once the store takes it (the real SQLite outcome store of these settings)
    with patch.dict(os.environ, {"STATE_DIR": str(tmp_path)}):
        assert quarantine_main(["replay", "--store", "outcomes"]) == 0
    assert Quarantine(tmp_path / "quarantine" / "outcomes").count() == 0
    database = settings.prediction_log_location.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:  # it is in the store now
        assert connection.execute("SELECT count(*) FROM outcomes WHERE customer_id = 'bad'").fetchone() == (1,)


def test_an_unreadable_log_row_is_skipped_by_readers_not_fatal(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'log.sqlite'}")
    store.write_many(entries(["a", "b"]))
    with sqlite3.connect(store.path) as connection:
        connection.execute("UPDATE predictions SET input = 'not json' WHERE request_id = 'a'")
    rows = store.read(datetime(2000, 1, 1, tzinfo=UTC), None, None)
    assert [r["request_id"] for r in rows] == ["b"]
