"""Where the simulators' records come from: the feature store's reference data, else generated data (said loudly)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from mlops import aws
from mlops.aws import ServiceUnavailable
from mlops.data import clean, generate_bank_churners
from mlops.feature_store import FeatureStore
from mlops.settings import Settings
from mlops.spec import FeatureSpec
from simulation_business.sampling import drift_frame, to_records

GENERATED_ROWS = 2000


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_pool(
    settings: Settings,
    spec: FeatureSpec,
    drift: bool = False,
    strength: float = 1.0,
    seed: int = 0,
    say: Callable[[str], None] = _stderr,
) -> tuple[list[dict[str, Any]], str]:
    """(records to sample from, where they came from). Falls back to generated data when the store is empty/down."""
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
        frame = clean(generate_bank_churners(GENERATED_ROWS, seed=seed + 1), spec, require_target=False)
        origin = f"generated ({GENERATED_ROWS} rows, seed {seed + 1})"
    if drift:
        frame = drift_frame(frame, spec, strength=strength, seed=seed)
        origin += f", drifted by {strength:g} std"
    return to_records(frame, spec), origin
