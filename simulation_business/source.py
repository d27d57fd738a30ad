"""Where the simulators' records come from: the feature store's reference data, else generated data (said loudly)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.contract import LABEL
from mlops.data import clean, generate_bank_churners
from mlops.feature_store import FeatureStore
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from simulation_business.sampling import drift_frame, to_records

GENERATED_ROWS = 2000


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Pool:
    """Records to sample from (with their customer id), where they came from, and each customer's true label."""

    records: list[dict[str, Any]]
    origin: str
    labels: dict[str, int] = field(default_factory=dict)  # customer id -> 1 (positive) / 0


def load_pool(
    settings: Settings,
    spec: FeatureSpec,
    drift: bool = False,
    strength: float = 1.0,
    seed: int = 0,
    say: Callable[[str], None] = _stderr,
) -> Pool:
    """The records to send. Falls back to generated data when the store is empty/down."""
    try:
        store = FeatureStore(aws.client("s3", settings), settings)
        snapshot = store.latest(spec.name)
        frame = store.get_frame(snapshot, "reference.parquet")
        origin = snapshot.uri("reference.parquet")
    except (FileNotFoundError, ServiceUnavailable) as error:
        say(
            f"feature store has no data for '{spec.name}' in s3://{settings.s3_bucket} ({error}); "
            f"sending GENERATED records instead (run `make init_aws` to load real ones)"
        )
        frame = clean(generate_bank_churners(GENERATED_ROWS, seed=seed + 1), spec)
        origin = f"generated ({GENERATED_ROWS} rows, seed {seed + 1})"
    labels: dict[str, int] = {}
    if spec.id_column and spec.id_column in frame.columns and LABEL in frame.columns:
        known = frame[[spec.id_column, LABEL]].dropna()
        labels = dict(zip(known[spec.id_column].astype(str), known[LABEL].astype(int), strict=True))
    if drift:
        frame = drift_frame(frame, spec, strength=strength, seed=seed)
        origin += f", drifted by {strength:g} std"
    return Pool(to_records(frame, spec, with_id=True), origin, labels)
