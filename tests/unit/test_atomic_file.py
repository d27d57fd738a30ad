"""mlops.atomic_file: whole content or none, readable by others, and no clash between concurrent writers."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from mlops.atomic_file import write_atomic


def test_write_atomic_replaces_whole_content(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, "x" * 1000)
    write_atomic(target, "short")
    assert target.read_text() == "short"
    assert list(tmp_path.iterdir()) == [target]


def test_the_file_is_readable_by_other_users(tmp_path: Path) -> None:
    """A report page behind nginx (another user) must be world-readable; mkstemp alone gives 0600."""
    target = tmp_path / "index.html"
    write_atomic(target, "<html></html>")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(target, "{}", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_concurrent_writers_of_one_file_never_fail(tmp_path: Path) -> None:
    """Two workers wrote last-served.json at start-up through one shared temporary name: one rename took the
    other's file away. Eight threads, fifty writes each, every one must succeed and leave a whole content."""
    target = tmp_path / "last-served.json"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(50):
                write_atomic(target, f'{{"writer": {n}, "i": {i}}}')
        except BaseException as error:  # collected: an exception in a thread would not fail the test
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text().startswith('{"writer": ') and target.read_text().endswith("}")
    assert list(tmp_path.iterdir()) == [target]
