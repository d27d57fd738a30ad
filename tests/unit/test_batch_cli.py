"""`python -m batch score|watch` with an offline model folder: exit codes, summary line, watcher picks up new files."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch import cli
from batch.testing import save_model_dir, tiny_bundle, write_account_files


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model_dir(tiny_bundle(), tmp_path_factory.mktemp("models") / "clirun" / "model")


def test_score_exit_code_and_summary(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_account_files(inputs, 3, 10)
    args = ["score", str(inputs), str(out), "--model-dir", str(model_dir), "--workers", "1", "--no-progress"]
    assert cli.main(args) == 0
    assert "scored=3 skipped=0 rejected=0 rows=30" in capsys.readouterr().out
    assert len(list((out / "clirun" / "predictions").iterdir())) == 3

    (inputs / "bad.csv").write_text("CLIENTNUM,Shoe_Size\n1,42\n")
    assert cli.main(args) == 1
    printed = capsys.readouterr().out
    assert "scored=0 skipped=3 rejected=1" in printed
    assert "bad.csv" in printed and "none of the spec's features" in printed


def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["score", str(tmp_path / "missing"), str(tmp_path / "out"), "--model-dir", str(model_dir)])
    assert code == 2
    assert "does not exist" in capsys.readouterr().out
    code = cli.main(["score", str(tmp_path), str(tmp_path / "o"), "--model-dir", str(model_dir), "--aggregate", "x"])
    assert code == 2


def test_watch_scores_new_files_as_they_appear(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_account_files(inputs, 2, 5)
    polls: list[int] = []

    def fake_sleep(seconds: float) -> None:
        assert seconds == 0.5
        polls.append(len(list((out / "clirun" / "predictions").iterdir())))
        if len(polls) == 1:  # a new file lands between two polls
            write_account_files(inputs, 1, 5, start=7, seed=3)

    args = cli.build_parser().parse_args(
        [
            "watch",
            str(inputs),
            str(out),
            "--model-dir",
            str(model_dir),
            "--workers",
            "1",
            "--interval",
            "0.5",
            "--max-polls",
            "3",
        ]
    )
    bundle = cli.load_model(args, cli.load_settings("local"))
    assert cli.watch(args, bundle, cli.load_settings("local"), cli.Console(), sleep=fake_sleep) == 0
    assert polls == [2, 3]
    assert (out / "clirun" / "predictions" / "account-0000007.csv.parquet").exists()
