"""Background threads that cannot die silently: restarted when they raise, and visible while they are unwell.

Every long-lived thread of the platform (the prediction-log writer, the drift sink, the shadow scorer, the drift
service's workers, the retrain trigger) runs its loop under a `Supervised`: an exception out of the loop is logged
with its traceback, counted in `restarts`, and the loop starts again after a back-off (doubling up to
`max_backoff_s`), so a bug reached by one odd input costs a restart, not the pipeline. `problem()` is what
`/health` says about it (None when well): dead, restarting, or silent for longer than its loop allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RECENT_S = 60.0  # a restart this recent makes the thread "unwell" in /health


class Supervised:
    """Runs `loop()` in a daemon thread until it returns; restarts it when it raises.

    `loop` should call `beat()` each time round (so `problem(max_silence_s)` can tell a stuck thread), and return
    when its work is done (it is then not restarted).
    """

    def __init__(
        self,
        name: str,
        loop: Callable[[], None],
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.loop = loop
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.on_restart = on_restart
        self.restarts = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_beat = time.monotonic()
        self.finished = False
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Supervised:
        self.thread.start()
        return self

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        """No restart after the loop's next exception (the loop itself is told to end by its owner)."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        backoff = self.backoff_s
        while True:
            started = time.monotonic()
            try:
                self.loop()
            except Exception as error:
                self.restarts += 1
                self.last_error_at = time.monotonic()
                self.last_error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
                log.exception("background thread %s failed (restart %d)", self.name, self.restarts)
                if self.on_restart is not None:
                    try:
                        self.on_restart(self.name)
                    except Exception:
                        log.exception("restart hook of %s failed", self.name)
                if self._stopping.is_set():
                    return
                if time.monotonic() - started > 60:
                    backoff = self.backoff_s  # it ran well for a while: start the back-off over
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self.finished = True
            return

    def problems(self, max_silence_s: float | None = None) -> list[str]:
        """`problem` as a list, the shape every /health collects."""
        found = self.problem(max_silence_s)
        return [found] if found else []

    def problem(self, max_silence_s: float | None = None) -> str | None:
        """Why this thread is not well, for /health; None when it is (or when it finished its work)."""
        if self.finished:
            return None
        if not self.thread.is_alive():
            return f"background thread {self.name} is not running (last error: {self.last_error})"
        silent = time.monotonic() - self.last_beat
        if max_silence_s is not None and silent > max_silence_s:
            return f"background thread {self.name} has not moved for {silent:.0f} s"
        if self.last_error_at is not None and time.monotonic() - self.last_error_at < RECENT_S:
            return f"background thread {self.name} restarted {self.restarts} time(s); last error: {self.last_error}"
        return None
