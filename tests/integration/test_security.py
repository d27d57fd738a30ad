"""Access control on a real gunicorn API: 401 without a key, 403 with a wrong one, 429 over RATE_LIMIT, and not
one refused call in the prediction log; env=cloud without API_KEY does not start at all."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from native.throwaway import VENV_BIN, start_process, stop_process
from tests.support.api import ApiServer, start_api
from tests.support.records import GOOD
from tests.support.redis_server import redis_server as start_redis

pytestmark = pytest.mark.integration

KEY = "integration-test-key-0123456789"
RATE = 25  # per hour and worker: a fixed window that cannot roll over during the test


@pytest.fixture(scope="module")
def keyed_api(
    service_env: dict[str, str], trained_run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    server = start_api(
        service_env, tmp_path_factory.mktemp("secure-api"), workers=1, API_KEY=KEY, RATE_LIMIT=f"{RATE}/hour"
    )
    yield server
    stop_process(server.process, timeout=30)


def _settled_count(server: ApiServer, timeout: float = 10.0) -> int:
    """The prediction log's count once it stops changing (the writer batches in the background)."""
    store = server.store()
    deadline = time.monotonic() + timeout
    last = store.count()
    while time.monotonic() < deadline:
        time.sleep(0.7)
        now = store.count()
        if now == last:
            return now
        last = now
    return last


def test_key_required_wrong_key_refused_rate_limited_and_nothing_refused_is_logged(keyed_api: ApiServer) -> None:
    url = f"{keyed_api.url}/predict"
    before = _settled_count(keyed_api)
    answered = 0
    with requests.Session() as session:
        # a connection per request: a keep-alive connection the server times out while a loaded machine stalls
        # the client would break the count with RemoteDisconnected, a transport race this test is not about
        session.headers["Connection"] = "close"
        missing = session.post(url, json=GOOD, timeout=10)
        assert missing.status_code == 401 and missing.json()["field"] == "x-api-key"
        for wrong in ("", "x", KEY[:-1], KEY + "x", KEY.upper()):
            response = session.post(url, json=GOOD, headers={"x-api-key": wrong}, timeout=10)
            assert response.status_code == (401 if not wrong else 403), wrong
        statuses = []
        for _ in range(RATE + 10):
            response = session.post(url, json=[GOOD, GOOD], headers={"x-api-key": KEY}, timeout=10)
            statuses.append(response.status_code)
            if response.status_code == 200:
                answered += 2
            else:
                assert response.status_code == 429
                assert int(response.headers["Retry-After"]) > 0
                assert response.json()["error"] == "too many requests"
        assert statuses == [200] * RATE + [429] * 10
        # open endpoints stay open, without a key and over the rate
        assert session.get(f"{keyed_api.url}/health", timeout=5).status_code == 200
        assert session.get(f"{keyed_api.url}/metrics", timeout=5).status_code == 200
        # the admin endpoint is behind the key too
        assert session.post(f"{keyed_api.url}/admin/reload", timeout=5).status_code == 401
        assert session.post(f"{keyed_api.url}/admin/reload", headers={"x-api-key": "no"}, timeout=5).status_code == 403
    assert _settled_count(keyed_api) - before == answered == 2 * RATE


def test_cloud_without_api_key_refuses_to_start(service_env: dict[str, str], tmp_path: Any) -> None:
    env = {**service_env, "ENV": "cloud", "API_KEY": "", "AWS_ENDPOINT_URL": "", "STATE_DIR": str(tmp_path)}
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    log = tmp_path / "cloud.log"
    process = start_process([str(VENV_BIN / "python"), "-m", "server.api", "--env", "cloud"], log, env=env)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop_process(process)
        pytest.fail("the API started in env=cloud without API_KEY")
    assert code != 0
    assert "API_KEY" in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """A real redis-server (Debian package) on a free loopback port, nothing persisted."""
    with start_redis(tmp_path_factory.mktemp("redis")) as (url, process):
        yield url, process


def test_a_shared_redis_count_makes_the_limit_exact_across_workers(
    service_env: dict[str, str], trained_run_id: str, redis_server: tuple[str, Any], tmp_path: Path
) -> None:
    """2 workers, each request on a new connection (spread over both): exactly RATE answers, then 429s; in memory
    each worker would have let up to RATE through on its own. Then Redis dies: requests are still answered (each
    worker counts in memory), never a 5xx."""
    redis_url, redis_process = redis_server
    server = start_api(
        service_env,
        tmp_path / "api",
        workers=2,
        API_KEY=KEY,
        RATE_LIMIT=f"{RATE}/hour",
        RATE_LIMIT_STORAGE_URI=redis_url,
    )
    try:
        statuses = []
        for _ in range(2 * RATE + 10):
            response = requests.post(
                f"{server.url}/predict", json=GOOD, headers={"x-api-key": KEY, "Connection": "close"}, timeout=10
            )
            statuses.append(response.status_code)
        assert statuses.count(200) == RATE and statuses == [200] * RATE + [429] * (RATE + 10)
        stop_process(redis_process)
        after = [
            requests.post(f"{server.url}/predict", json=GOOD, headers={"x-api-key": KEY}, timeout=10).status_code
            for _ in range(6)
        ]
        assert set(after) <= {200, 429} and 200 in after, after  # the in-memory fallback starts a fresh count
        log = server.log.read_text(errors="replace")
        assert f"RATE_LIMIT_STORAGE_URI={redis_url}" in log and "Traceback" not in log
    finally:
        stop_process(server.process, timeout=30)
