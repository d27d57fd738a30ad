"""What the business learns later: whether the customers it scored left. The simulators' outcome sender.

With `--outcome-delay S`, every record a simulator sent gets its outcome `S` seconds later, POSTed in lists to the
API's /outcomes: its request id, its customer id and its true label (from the feature store's reference data),
flipped with probability `--label-noise` (0.5: labels unrelated to the model; 0.9: the model looks wrong), so the
realized-performance panels and the ROC AUC alert move on a laptop. A customer drawn twice into one HTTP batch gets
no outcome for that batch (its request id and customer id would not tell the two predictions apart).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import requests

from mlops.spec import FeatureSpec

API_KEY_HEADER = "X-API-Key"
MAX_PER_POST = 500


def outcomes_url_for(predict_url: str) -> str:
    """The /outcomes endpoint beside a /predict URL."""
    base = predict_url[: -len("/predict")] if predict_url.endswith("/predict") else predict_url.rstrip("/")
    return f"{base}/outcomes"


class OutcomeSender:
    """Schedules one outcome per record sent and POSTs those that came due."""

    def __init__(
        self,
        url: str,
        spec: FeatureSpec,
        labels: Mapping[str, int],
        delay_s: float,
        noise: float,
        rng: np.random.Generator,
        api_key: str | None = None,
        timeout: float = 10.0,
        say: Callable[[str], None] = print,
    ) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError("--label-noise must be between 0 and 1")
        if delay_s < 0:
            raise ValueError("--outcome-delay must be >= 0")
        self.url = url
        self.id_column = spec.id_column
        self.texts = {1: spec.target.positive, 0: spec.target.negative or f"not {spec.target.positive}"}
        self.labels = labels
        self.delay_s = delay_s
        self.noise = noise
        self.rng = rng
        self.api_key = api_key
        self.timeout = timeout
        self.say = say
        self._due: list[tuple[float, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self.totals: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._due)

    def remember(self, request_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Schedule the outcomes of the records sent under `request_id` (those with a known customer and label)."""
        if self.id_column is None:
            return
        ids = [str(r.get(self.id_column)) for r in records if r.get(self.id_column) is not None]
        twice = {i for i, n in Counter(ids).items() if n > 1}
        due = time.monotonic() + self.delay_s
        for customer in ids:
            if customer in twice or customer not in self.labels:
                self.totals["not_sent"] += 1
                continue
            label = self.labels[customer]
            if self.noise and self.rng.uniform() < self.noise:
                label = 1 - label
            outcome = {"request_id": request_id, self.id_column: customer, "label": self.texts[label]}
            heapq.heappush(self._due, (due, next(self._order), outcome))

    def send_due(self, session: requests.Session, everything: bool = False) -> int:
        """POST the outcomes that came due (all of them with `everything`); returns how many were accepted."""
        now = time.monotonic()
        ready: list[dict[str, Any]] = []
        while self._due and (everything or self._due[0][0] <= now):
            ready.append(heapq.heappop(self._due)[2])
        accepted = 0
        for start in range(0, len(ready), MAX_PER_POST):
            accepted += self._post(session, ready[start : start + MAX_PER_POST])
        return accepted

    def wait_and_send_rest(self, session: requests.Session) -> int:
        """At the end of a counted run: wait until the last outcome is due, then send everything left."""
        if self._due:
            last = max(due for due, _, _ in self._due)
            time.sleep(max(0.0, last - time.monotonic()))
        return self.send_due(session, everything=True)

    def _post(self, session: requests.Session, outcomes: list[dict[str, Any]]) -> int:
        headers = {API_KEY_HEADER: self.api_key} if self.api_key else {}
        try:
            response = session.post(self.url, json=outcomes, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            self.totals["failed"] += len(outcomes)
            self.say(f"outcomes: API unreachable at {self.url} ({type(error).__name__}); {len(outcomes)} not sent")
            return 0
        if response.status_code != 200:
            self.totals["failed"] += len(outcomes)
            self.say(f"outcomes: HTTP {response.status_code} from {self.url}: {response.text[:300]}")
            return 0
        answer = response.json()
        for key in ("settled", "duplicates", "unknown", "ambiguous", "conflicts"):
            self.totals[key] += int(answer.get(key, 0))
        self.totals["sent"] += len(outcomes)
        self.say(
            f"outcomes: {len(outcomes)} sent, {answer.get('settled')} settled, {answer.get('unknown')} unknown"
            + (f" (e.g. {answer['unknown_keys'][:2]})" if answer.get("unknown_keys") else "")
        )
        return len(outcomes)

    def summary(self) -> dict[str, int]:
        return {f"outcomes_{key}": value for key, value in sorted(self.totals.items())}


def sender_from_args(
    args: argparse.Namespace, predict_url: str, spec: FeatureSpec, labels: dict[str, int], api_key: str | None
) -> OutcomeSender | None:
    """The outcome sender the options ask for (None without --outcome-delay)."""
    if args.outcome_delay is None:
        return None
    url = args.outcomes_url or outcomes_url_for(predict_url)
    if not labels:
        print("outcomes: the records' source has no labels; no outcomes will be sent", file=sys.stderr, flush=True)
    print(f"outcomes {args.outcome_delay:g}s later to {url}, label noise {args.label_noise:g}", flush=True)
    return OutcomeSender(
        url, spec, labels, args.outcome_delay, args.label_noise, np.random.default_rng(args.seed + 1), api_key
    )
