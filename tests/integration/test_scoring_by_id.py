"""Scoring by customer id on real servers, with the online store on a real Redis (Debian's redis-server) and on
SQLite: `python -m mlops.materialize` (what `make materialize` runs) from moto's S3, then gunicorn's API answers
`GET /customers/<id>/churn` with the same probability as `POST /predict` of the customer's full raw record (1e-6);
new data re-materialized changes the answer and its snapshot; an unknown id is a 404, a dead Redis a 503 naming
ONLINE_STORE_URI; `python -m batch customers` scores every customer of the store to the same probabilities.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from mlops.data import generate_bank_churners
from mlops.init_aws import load_data
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from native.throwaway import VENV_BIN, stop_process
from tests.support.api import ApiServer, start_api
from tests.support.redis_server import redis_server

pytestmark = pytest.mark.integration

BUCKET = "test-online-store"
REDIS_PASSWORD = "test-redis-password-0123"
ROWS = 400


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # authenticated, as compose runs it: --requirepass with protected mode on; the password travels in the URI
    with redis_server(tmp_path_factory.mktemp("redis"), REDIS_PASSWORD) as (url, _):
        assert_refused_without_password(int(url.rsplit(":", 1)[1].split("/")[0]))
        yield url


def assert_refused_without_password(port: int) -> None:
    import time

    import redis

    for _ in range(50):
        try:
            redis.Redis(port=port).ping()
        except redis.AuthenticationError:
            return
        except redis.ConnectionError:
            time.sleep(0.1)
            continue
        raise AssertionError("redis-server answered without its password")
    raise AssertionError(f"redis-server did not start on :{port}")


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A raw file (Kaggle schema) of ROWS customers, loaded into a bucket of its own."""
    folder = tmp_path_factory.mktemp("by-id-data")
    frame = generate_bank_churners(ROWS, seed=77)
    path = folder / "accounts-v1.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(
    request: pytest.FixtureRequest,
    settings: Settings,
    service_env: dict[str, str],
    trained_run_id: str,
    raw_data: tuple[Path, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApiServer, dict[str, str], str]]:
    state = tmp_path_factory.mktemp(f"by-id-{request.param}")
    uri = request.getfixturevalue("redis_url") if request.param == "redis" else f"sqlite:///{state / 'online.sqlite'}"
    if request.param == "redis":
        import redis

        redis.Redis.from_url(uri).flushdb()
    own = settings.model_copy(update={"s3_bucket": BUCKET, "state_dir": state})
    from mlops import aws

    aws.ensure_bucket(aws.client("s3", own), BUCKET, own.aws_region)
    load_data(own, FeatureSpec.load(own.feature_spec), raw_data[0], ROWS, 1)
    env = {**service_env, "S3_BUCKET": BUCKET, "ONLINE_STORE_URI": uri, "STATE_DIR": str(state)}
    done = run([str(VENV_BIN / "python"), "-m", "mlops.materialize"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"online  {ROWS} customers" in done.stdout and f"({ROWS} changed" in done.stdout
    again = run([str(VENV_BIN / "python"), "-m", "mlops.materialize"], env)
    assert "(0 changed" in again.stdout, again.stdout + again.stderr  # idempotent
    api = start_api(service_env, state / "api", workers=2, ONLINE_STORE_URI=uri)
    yield api, env, request.param
    stop_process(api.process, timeout=30)


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)


def full_record(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    """Row i of the raw file as a client sends it: Kaggle spelling, strings and all, target and leaks included."""
    row = frame.iloc[i].to_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


def test_by_id_equals_the_full_record(
    served: tuple[ApiServer, dict[str, str], str], raw_data: tuple[Path, pd.DataFrame], trained_run_id: str
) -> None:
    api, _, _ = served
    frame = raw_data[1]
    with requests.Session() as session:
        for i in range(0, ROWS, 8):
            customer = str(frame["CLIENTNUM"].iloc[i])
            by_id = session.get(f"{api.url}/customers/{customer}/churn", timeout=10)
            assert by_id.status_code == 200, by_id.text
            full = session.post(f"{api.url}/predict", json=full_record(frame, i), timeout=10)
            assert full.status_code == 200, full.text
            assert by_id.json()["churn chance"] == pytest.approx(full.json()["churn chance"], abs=1e-6)
            assert by_id.json()["clientnum"] == customer == full.json()["clientnum"]
            assert by_id.json()["model_run_id"] == trained_run_id
    features = requests.get(f"{api.url}/customers/{frame['CLIENTNUM'].iloc[0]}/features", timeout=10).json()
    assert features["features"]["customer_age"] == int(frame["Customer_Age"].iloc[0])
    missing = requests.get(f"{api.url}/customers/000000001/churn", timeout=10)
    assert missing.status_code == 404 and "'000000001'" in missing.json()["reason"]


def test_new_data_rematerialized_changes_the_answer(
    served: tuple[ApiServer, dict[str, str], str], raw_data: tuple[Path, pd.DataFrame], settings: Settings
) -> None:
    api, env, _ = served
    path, frame = raw_data
    customer = str(frame["CLIENTNUM"].iloc[3])
    before = requests.get(f"{api.url}/customers/{customer}/churn", timeout=10).json()
    changed = frame.copy()
    changed.loc[3, "Total_Trans_Ct"] = 10  # a customer who stopped using the card
    changed.loc[3, "Total_Trans_Amt"] = 500.0
    changed.loc[3, "Months_Inactive_12_mon"] = 6
    newer = path.with_name("accounts-v2.csv")
    changed.to_csv(newer, index=False)
    own = settings.model_copy(update={"s3_bucket": BUCKET, "state_dir": Path(env["STATE_DIR"])})
    snapshot = load_data(own, FeatureSpec.load(own.feature_spec), newer, ROWS, 1)
    untouched = str(frame["CLIENTNUM"].iloc[4])
    untouched_before = requests.get(f"{api.url}/customers/{untouched}/churn", timeout=10).json()
    done = run([str(VENV_BIN / "python"), "-m", "mlops.materialize"], env)
    # every row now names the new snapshot (a new data hash re-stamps them all)
    assert done.returncode == 0 and f"({ROWS} changed" in done.stdout, done.stdout + done.stderr
    after = requests.get(f"{api.url}/customers/{customer}/churn", timeout=10).json()
    assert after["snapshot"] == snapshot.data_hash != before["snapshot"]
    assert abs(after["churn chance"] - before["churn chance"]) > 1e-4
    untouched_after = requests.get(f"{api.url}/customers/{untouched}/churn", timeout=10).json()
    assert untouched_after["snapshot"] == snapshot.data_hash
    assert untouched_after["churn chance"] == pytest.approx(untouched_before["churn chance"], abs=1e-12)
    full = requests.post(f"{api.url}/predict", json=full_record(changed, 3), timeout=10).json()
    assert after["churn chance"] == pytest.approx(full["churn chance"], abs=1e-6)


def test_batch_scores_every_customer_of_the_store(
    served: tuple[ApiServer, dict[str, str], str], raw_data: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    api, env, _ = served
    done = run([str(VENV_BIN / "python"), "-m", "batch", "customers", str(tmp_path / "out")], env)
    assert done.returncode == 0, done.stdout + done.stderr
    (written,) = list((tmp_path / "out").rglob("customers-*.parquet"))
    table = pd.read_parquet(io.BytesIO(written.read_bytes()))
    assert len(table) == ROWS and table["clientnum"].is_unique
    for customer, chance in table.sample(10, random_state=0)[["clientnum", "churn_probability"]].itertuples(
        index=False
    ):
        by_id = requests.get(f"{api.url}/customers/{customer}/churn", timeout=10).json()
        assert by_id["churn chance"] == pytest.approx(chance, abs=1e-6)


def test_a_dead_redis_is_a_503_naming_the_setting(
    served: tuple[ApiServer, dict[str, str], str], raw_data: tuple[Path, pd.DataFrame]
) -> None:
    api, env, kind = served
    if kind != "redis":
        return  # SQLite has no server to stop; its outage is tests/unit/test_online_store.py's
    import redis

    customer = str(raw_data[1]["CLIENTNUM"].iloc[0])
    redis.Redis.from_url(env["ONLINE_STORE_URI"]).shutdown(nosave=True)
    answer = requests.get(f"{api.url}/customers/{customer}/churn", timeout=10)
    assert answer.status_code == 503, answer.text
    assert "ONLINE_STORE_URI=redis://:***@127.0.0.1" in answer.json()["reason"]  # named, its password never
    assert REDIS_PASSWORD not in answer.text
    # the API itself keeps serving full records
    assert requests.post(f"{api.url}/predict", json=full_record(raw_data[1], 0), timeout=10).status_code == 200
