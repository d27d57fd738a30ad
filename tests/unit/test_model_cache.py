"""The local model cache is shared by processes (API, stream consumer) that may download the same run at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops import registry
from mlops.settings import Settings

RUN = "0123456789abcdef0123456789abcdef"


def _write_model(folder: Path, marker: str, complete: bool = True) -> None:
    for name in registry.MODEL_FILES if complete else registry.MODEL_FILES[:1]:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marker)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, state_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:1")


def _fake_download(monkeypatch: pytest.MonkeyPatch, before_return: Any = None) -> None:
    def download_artifacts(artifact_uri: str, dst_path: str) -> str:
        folder = Path(dst_path) / registry.MODEL_ARTIFACT
        _write_model(folder, "ours")
        if before_return:
            before_return()
        return str(folder)

    monkeypatch.setattr(registry.mlflow.artifacts, "download_artifacts", download_artifacts)


def test_a_copy_published_by_another_process_meanwhile_is_kept_not_pulled_away(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = registry.cached_model_dir(settings.model_cache_dir, RUN)
    opened: list[Any] = []

    def other_process_publishes() -> None:
        _write_model(target, "theirs")
        opened.append((target / registry.MODEL_FILES[2]).open())  # a reader mid-load in the other process

    _fake_download(monkeypatch, other_process_publishes)
    assert registry.download_model(settings, RUN) == target
    assert all((target / name).read_text() == "theirs" for name in registry.MODEL_FILES)
    assert opened[0].read() == "theirs"
    opened[0].close()
    assert [p.name for p in target.parent.iterdir()] == [registry.MODEL_ARTIFACT]  # no scratch left behind


def test_an_incomplete_leftover_is_replaced_by_the_download(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = registry.cached_model_dir(settings.model_cache_dir, RUN)
    _write_model(target, "half", complete=False)
    _fake_download(monkeypatch)
    registry.download_model(settings, RUN)
    assert all((target / name).read_text() == "ours" for name in registry.MODEL_FILES)
    assert [p.name for p in target.parent.iterdir()] == [registry.MODEL_ARTIFACT]


def test_a_complete_cache_entry_is_served_without_asking_mlflow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = registry.cached_model_dir(settings.model_cache_dir, RUN)
    _write_model(target, "cached")

    def no_download(**_: Any) -> str:
        raise AssertionError("downloaded although the cache was complete")

    monkeypatch.setattr(registry.mlflow.artifacts, "download_artifacts", no_download)
    assert registry.download_model(settings, RUN) == target


def test_the_cache_keeps_the_newest_models_and_the_last_served(tmp_path: Path) -> None:
    import os

    cache = tmp_path / "model-cache"
    runs = [f"{i:032x}" for i in range(6)]
    for age, run in enumerate(reversed(runs)):  # runs[0] is the oldest
        _write_model(registry.cached_model_dir(cache, run), run)
        os.utime(cache / run, (1_000_000 - age * 100, 1_000_000 - age * 100))
    (cache / registry.LAST_SERVED).write_text(f'{{"run_id": "{runs[0]}"}}')
    removed = registry.prune_cache(cache, keep=3, protected={registry.last_served(cache) or ""})
    assert sorted(removed) == sorted(runs[1:3])
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == sorted([runs[0], *runs[3:]])
