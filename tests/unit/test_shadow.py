"""Shadow scoring on the real Flask app and ModelService (tiny boosters): the client's answer comes from the served
model and never waits for the shadow; the shadow's scores reach the log under its own run id, source `shadow`, the
same request id; a failing shadow costs the client nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from mlops.settings import load_settings
from server.api import STATE_KEY, close_app, create_app
from server.shadow import ShadowScorer
from tests.support.records import GOOD, RecordingSink, tiny_service


def wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_answer_never_waits_for_the_shadow_and_the_shadow_is_logged(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, drift_service_url=None, shadow_model="shadow-run")
    live, sink = tiny_service("live-run"), RecordingSink()
    app = create_app(settings.model_copy(update={"shadow_model": None}), service=live, sinks=[sink])
    gate = threading.Event()

    def load(run_id: str) -> Any:
        gate.wait(10)  # the shadow model is slow to come: the API must not care
        return tiny_service(run_id)

    written: list[dict[str, Any]] = []
    state = app.extensions[STATE_KEY]
    state.shadow = ShadowScorer(settings, written.extend, load=load)
    try:
        client = app.test_client()
        answers = [client.post("/predict", json=GOOD, headers={"X-Request-ID": f"r{i}"}) for i in range(3)]
        assert [a.get_json()["model_run_id"] for a in answers] == ["live-run"] * 3
        assert written == []  # nothing scored yet: the shadow is still loading, the answers went out
        gate.set()
        wait_for(lambda: len(written) == 3)
        assert {e["model_run_id"] for e in written} == {"shadow-run"}
        assert {e["source"] for e in written} == {"shadow"}
        assert [e["request_id"] for e in written] == ["r0", "r1", "r2"]
        assert [e["model_run_id"] for e in sink.entries] == ["live-run"] * 3
    finally:
        close_app(app)


def test_a_broken_shadow_is_counted_not_felt(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, drift_service_url=None, shadow_model="missing-run")

    def load(run_id: str) -> Any:
        raise LookupError(f"run {run_id} not found")

    scorer = ShadowScorer(settings, lambda entries: None, load=load)
    scorer.submit([GOOD, GOOD], "r1")
    wait_for(lambda: scorer.errors == 2)
    scorer.close()


def test_a_full_queue_drops_instead_of_blocking(tmp_path: Path) -> None:
    settings = load_settings("local", state_dir=tmp_path, shadow_model="shadow-run")
    gate = threading.Event()
    scorer = ShadowScorer(
        settings, lambda entries: None, load=lambda run: gate.wait(10) or tiny_service(run), queue_size=2
    )
    for i in range(6):
        scorer.submit([GOOD], f"r{i}")  # returns at once even though nothing is consumed
    assert scorer.dropped >= 3
    gate.set()
    scorer.close()


def test_a_record_scored_by_customer_id_is_shadow_scored_like_one_sent_in_full(tmp_path: Path) -> None:
    """Both paths go through the one Scorer: the by-id answer gets its shadow twin in the log, with the same input,
    request id and customer id as the same record sent in full (the by-id path used to skip the shadow)."""
    from mlops.spec import FeatureSpec
    from mlops.stores.online import SQLiteOnlineStore

    settings = load_settings("local", state_dir=tmp_path, drift_service_url=None, shadow_model="shadow-run")
    spec = FeatureSpec.load(settings.feature_spec)
    SQLiteOnlineStore(settings.online_store_location).write(spec.name, [("768805383", dict(GOOD))], "snap-1")
    live, sink = tiny_service("live-run"), RecordingSink()
    app = create_app(settings.model_copy(update={"shadow_model": None}), service=live, sinks=[sink])
    written: list[dict[str, Any]] = []
    app.extensions[STATE_KEY].shadow = ShadowScorer(settings, written.extend, load=tiny_service)
    try:
        client = app.test_client()
        by_id = client.get("/customers/768805383/churn", headers={"X-Request-ID": "by-id"})
        full = client.post("/predict", json={**GOOD, "CLIENTNUM": "768805383"}, headers={"X-Request-ID": "full"})
        assert by_id.status_code == 200 and full.status_code == 200, (by_id.get_json(), full.get_json())
        wait_for(lambda: len(written) == 2)
        shadows = {e["request_id"]: e for e in written}
        assert set(shadows) == {"by-id", "full"}
        assert {e["model_run_id"] for e in written} == {"shadow-run"}
        assert {e["source"] for e in written} == {"shadow"}
        assert shadows["by-id"]["customer_id"] == shadows["full"]["customer_id"] == "768805383"
        assert shadows["by-id"]["input"] == shadows["full"]["input"]
        assert shadows["by-id"]["prediction"] == shadows["full"]["prediction"]
        live_entries = {e["request_id"]: e for e in sink.entries}
        assert live_entries["by-id"]["input"] == live_entries["full"]["input"]
        assert {e["model_run_id"] for e in sink.entries} == {"live-run"}
    finally:
        close_app(app)
