"""The embedded batch engine on a tiny in-process model: identical predictions, idempotence, rejects, aggregates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.manifest import output_name
from batch.runner import run_batch
from batch.scoring import parse_aggregates
from batch.testing import TINY_RUN_ID, tiny_bundle, write_account_files
from mlops.model import ModelBundle
from mlops.model_service import ModelService
from mlops.spec import normalize_name


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return tiny_bundle()


def records_of(raw: pd.DataFrame, bundle: ModelBundle) -> list[dict]:
    """Raw rows as the HTTP API receives them: the spec's fields under normalized names, JSON types."""
    frame = raw.rename(columns=normalize_name)[[bundle.spec.id_column, *bundle.spec.feature_columns]]
    return json.loads(frame.to_json(orient="records"))


def read_output(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / output_name(TINY_RUN_ID, name)).to_pandas()


def test_every_row_scored_and_identical_to_model_service(tmp_path: Path, bundle: ModelBundle) -> None:
    inputs = tmp_path / "in"
    csvs = write_account_files(inputs, 4, 30)
    parquets = write_account_files(inputs / "sub", 2, 25, fmt="parquet", seed=5)
    summary = run_batch(str(inputs), str(tmp_path / "out"), bundle, workers=1)
    assert (summary.scored, summary.skipped, summary.rejected, summary.rows) == (6, 0, 0, 170)
    assert summary.exit_code == 0

    service = ModelService(bundle)
    for path in [*csvs, *parquets]:
        raw = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        name = path.relative_to(inputs).as_posix()
        scored = read_output(tmp_path / "out", name)
        expected = service.predict_records(service.validate(records_of(raw, bundle)))
        assert list(scored.columns) == ["clientnum", "churn_probability"]
        assert scored["clientnum"].tolist() == raw["CLIENTNUM"].astype(str).tolist()
        np.testing.assert_allclose(scored["churn_probability"].to_numpy(), expected, atol=1e-6, rtol=0)


def test_rerun_skips_scored_files_and_rescores_a_replaced_one(tmp_path: Path, bundle: ModelBundle) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    paths = write_account_files(inputs, 5, 20)
    first = run_batch(str(inputs), str(out), bundle, workers=1)
    assert first.scored == 5
    before = (out / output_name(TINY_RUN_ID, paths[0].name)).stat().st_mtime_ns

    second = run_batch(str(inputs), str(out), bundle, workers=1)
    assert (second.scored, second.skipped, second.rejected) == (0, 5, 0)
    assert (out / output_name(TINY_RUN_ID, paths[0].name)).stat().st_mtime_ns == before

    write_account_files(inputs, 1, 7, seed=99)  # replaces account-0000000.csv with 7 other rows
    os.utime(paths[0], ns=(1, 1))  # and makes sure its fingerprint differs even on coarse clocks
    third = run_batch(str(inputs), str(out), bundle, workers=1)
    assert (third.scored, third.skipped) == (1, 4)
    assert len(read_output(out, paths[0].name)) == 7

    other_model = tiny_bundle(rounds=5, run_id="othermodel")
    fourth = run_batch(str(inputs), str(out), other_model, workers=1)
    assert (fourth.scored, fourth.skipped) == (5, 0)  # a new model scores everything again, in its own folder
    manifest_lines = [
        json.loads(line)
        for part in (out / "othermodel" / "_manifest").iterdir()
        for line in part.read_text().splitlines()
    ]
    assert {m["input_name"] for m in manifest_lines} == {p.name for p in paths}
    assert all(m["run_id"] == "othermodel" and m["rows"] > 0 and "fingerprint" in m for m in manifest_lines)


def test_bad_files_are_rejected_with_their_reason_and_the_rest_completes(tmp_path: Path, bundle: ModelBundle) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    good = write_account_files(inputs, 3, 10)
    raw = pd.read_csv(good[0])
    raw.drop(columns=["Credit_Limit"]).to_csv(inputs / "missing-column.csv", index=False)
    typed = raw.astype({"Customer_Age": str})
    typed.loc[3, "Customer_Age"] = "forty"
    typed.to_csv(inputs / "bad-type.csv", index=False)
    category = raw.copy()
    category.loc[0, "Card_Category"] = "Diamond"
    category.to_csv(inputs / "bad-category.csv", index=False)
    (inputs / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    (inputs / "empty.csv").write_bytes(b"")
    (inputs / "header-only.csv").write_text(",".join(raw.columns) + "\n")

    summary = run_batch(str(inputs), str(out), bundle, workers=1)
    reasons = {r["input_name"]: r["reason"] for r in summary.rejects}
    # a file without a feature column is scored with that feature missing (issue 25), like a record without it
    assert (summary.scored, summary.rejected) == (4, 5)
    assert "missing-column.csv" not in reasons
    assert summary.exit_code == 1
    assert "customer_age" in reasons["bad-type.csv"] and '"forty"' in reasons["bad-type.csv"]
    assert "Diamond" in reasons["bad-category.csv"]
    assert "cannot be read as Parquet" in reasons["corrupt.parquet"]
    assert "empty" in reasons["empty.csv"]
    assert "no rows" in reasons["header-only.csv"]
    assert "rejected=5" in summary.line() and "scored=4" in summary.line()
    rejects_file = next((out / TINY_RUN_ID / "_rejects").iterdir())
    assert {json.loads(line)["input_name"] for line in rejects_file.read_text().splitlines()} == set(reasons)
    # rejected files are not in the manifest: fixed, they are scored on the next run
    (inputs / "bad-category.csv").unlink()
    category.loc[0, "Card_Category"] = "Gold"
    category.to_csv(inputs / "bad-category.csv", index=False)
    again = run_batch(str(inputs), str(out), bundle, workers=1)
    assert (again.scored, again.skipped, again.rejected) == (1, 4, 4)


def test_process_pool_gives_the_same_outputs(tmp_path: Path, bundle: ModelBundle) -> None:
    inputs = tmp_path / "in"
    paths = write_account_files(inputs, 12, 15)
    (inputs / "corrupt.csv").write_bytes(b"\xff\xfe\x00garbage")
    inline = run_batch(str(inputs), str(tmp_path / "one"), bundle, workers=1)
    pooled = run_batch(str(inputs), str(tmp_path / "two"), bundle, workers=2)
    assert (pooled.scored, pooled.rejected) == (inline.scored, inline.rejected) == (12, 1)
    for path in paths:
        a = read_output(tmp_path / "one", path.name)
        b = read_output(tmp_path / "two", path.name)
        pd.testing.assert_frame_equal(a, b)


def test_per_file_aggregates_are_optional_output_columns(tmp_path: Path, bundle: ModelBundle) -> None:
    inputs = tmp_path / "in"
    (path,) = write_account_files(inputs, 1, 40)
    run_batch(
        str(inputs), str(tmp_path / "out"), bundle, workers=1, aggregates=["mean:Credit_Limit", "max:total_trans_ct"]
    )
    scored = read_output(tmp_path / "out", path.name)
    raw = pd.read_csv(path)
    assert scored["file_mean_credit_limit"].nunique() == 1
    assert scored["file_mean_credit_limit"].iloc[0] == pytest.approx(raw["Credit_Limit"].mean())
    assert scored["file_max_total_trans_ct"].iloc[0] == raw["Total_Trans_Ct"].max()


def test_aggregates_must_name_numeric_spec_columns(bundle: ModelBundle) -> None:
    with pytest.raises(ValueError, match="not a numeric column"):
        parse_aggregates(["mean:gender"], bundle.spec)
    with pytest.raises(ValueError, match="FUNCTION:COLUMN"):
        parse_aggregates(["avg:credit_limit"], bundle.spec)


def test_missing_input_folder_is_a_clear_error(tmp_path: Path, bundle: ModelBundle) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_batch(str(tmp_path / "nope"), str(tmp_path / "out"), bundle, workers=1)


def test_a_remote_stores_block_reads_and_writes_are_in_flight_together(tmp_path: Path, bundle: ModelBundle) -> None:
    """S3: a block's GETs (and PUTs) overlap (each waits a round trip); a local folder is read one file at a time.
    Same outputs either way, and a file that cannot be read is a reject of its own."""
    import threading
    import time

    from batch.engine import BlockScorer, Job
    from batch.scoring import ModelPayload
    from batch.storage import LocalStore

    class Remote(LocalStore):
        concurrency = 8

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def _track(self, call):  # type: ignore[no-untyped-def]
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                time.sleep(0.05)  # a round trip
                return call()
            finally:
                with self.lock:
                    self.now -= 1

        def read(self, name: str) -> bytes:
            if name == "broken.csv":
                raise PermissionError("denied")
            return self._track(lambda: super(Remote, self).read(name))

        def write(self, name: str, data: bytes) -> str:
            return self._track(lambda: super(Remote, self).write(name, data))

    write_account_files(tmp_path / "in", 8, 10)
    (tmp_path / "in" / "broken.csv").write_text("x")
    job = Job(ModelPayload.from_bundle(bundle, TINY_RUN_ID), str(tmp_path / "in"), str(tmp_path / "out"), None)
    scorer = BlockScorer(job, bundle)
    scorer.source, scorer.sink = Remote(tmp_path / "in"), Remote(tmp_path / "out")
    files = scorer.source.list()
    records = scorer.score(files)
    assert [r["status"] for r in records].count("scored") == 8
    assert next(r for r in records if r["input_name"] == "broken.csv")["reason"].startswith("cannot read broken.csv")
    assert scorer.source.most > 1 and scorer.sink.most > 1  # overlapped, not one after another
    local = BlockScorer(job, bundle)
    assert local.source.concurrency == 1
    again = local.score([f for f in files if f.name != "broken.csv"])
    assert [r["status"] for r in again] == ["scored"] * 8
