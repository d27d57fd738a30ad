"""ModelService: the one object every entry point (HTTP, Kinesis, batch) uses to validate records and predict.

It loads the model named by RUN_ID (else the registry alias `champion`, else `challenger`), keeps a local
cache by run id so a restart while MLflow is down still serves the last model, and predicts through the
booster's `inplace_predict` on a float32 matrix encoded straight from the records by the model's own spec.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlops import registry
from mlops.atomic_file import write_atomic
from mlops.aws import ServiceUnavailable
from mlops.contract import validator_for
from mlops.model import ModelBundle
from mlops.settings import Settings
from mlops.spec import FeatureSpec

log = logging.getLogger(__name__)


COLUMNAR_MIN_ROWS = 32  # below this the row-wise encoder is as fast and has no per-column setup


class ModelService:
    """Validate and predict with one loaded model.

    Thread-safe: prediction reads an immutable bundle (the booster is read-only at predict time) and `swap()`
    replaces the bundle atomically, so a hot reload never mixes two models inside one call.
    """

    def __init__(self, bundle: ModelBundle, source: str = "", allow_unknown: bool = False) -> None:
        bundle.walker()  # compiled and checked now, not on the first request
        self._bundle = bundle
        self._allow_unknown = allow_unknown  # ACCEPT_UNKNOWN_FIELDS: ignore fields the spec does not name
        self._validator = validator_for(bundle.spec, allow_unknown)
        self._swap_lock = threading.Lock()
        self.source = source  # why this model: "RUN_ID", "alias 'challenger' ...", "cache (MLflow down)"

    @property
    def bundle(self) -> ModelBundle:
        return self._bundle

    @property
    def run_id(self) -> str:
        return self._bundle.run_id or ""

    @property
    def spec(self) -> FeatureSpec:
        return self._bundle.spec

    def swap(self, new_bundle: ModelBundle, source: str = "hot reload") -> ModelBundle:
        """Serve `new_bundle` from now on (hot reload); returns the old one. Calls in flight finish on it."""
        validator = validator_for(new_bundle.spec, self._allow_unknown)
        new_bundle.walker()  # before the swap: requests keep the old model meanwhile
        with self._swap_lock:
            previous = self._bundle
            # one attribute store each; a reader takes `self._bundle` once per call
            self._validator = validator
            self._bundle = new_bundle
            self.source = source
        log.info("model swapped: %s -> %s (%s)", previous.run_id, new_bundle.run_id, source)
        if gc.get_freeze_count():  # the API worker froze what it loaded (gunicorn_app): let the old model go
            gc.unfreeze()
        return previous

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_settings(cls, settings: Settings) -> ModelService:
        """Resolve and load the model; with MLflow down, fall back to the last model served from the cache."""
        cache_dir = settings.model_cache_dir
        try:
            registry.check_mlflow(settings.mlflow_tracking_uri, timeout=3)
            run_id, why = registry.resolve_run_id(settings)
            model_dir = registry.download_model(settings, run_id)
        except ServiceUnavailable as error:
            run_id = settings.run_id or registry.last_served(cache_dir)
            model_dir = registry.cached_model_dir(cache_dir, run_id) if run_id else None
            if not model_dir or not registry.is_complete(model_dir):
                raise ServiceUnavailable(f"{error}; and no cached model to fall back on in {cache_dir}") from error
            why = f"local cache (MLflow unreachable at MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri})"
            log.warning("serving cached model %s: %s", run_id, error)
        bundle = ModelBundle.from_model_dir(model_dir, run_id=run_id, nthread=1)
        service = cls(bundle, source=why, allow_unknown=settings.accept_unknown_fields)
        remember_served(cache_dir, run_id)
        log.info("model %s loaded (%s)", run_id, why)
        return service

    # ------------------------------------------------------------------ predicting
    def check(self, record: Any, index: int | None = None) -> dict[str, Any]:
        """One record through the record contract (mlops.contract) of the served model's spec."""
        return self._validator(record, index)

    def validate(self, records: Sequence[Any], indexed: bool | None = None) -> list[dict[str, Any]]:
        """Validate every record; the first bad one raises RecordError.

        `indexed`: put the record's position in errors (default: only when there is more than one record).
        """
        check = self._validator
        with_index = len(records) > 1 if indexed is None else indexed
        if with_index:
            return [check(record, i) for i, record in enumerate(records)]
        return [check(record, None) for record in records]

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities for validated records, in order: one encode, one `inplace_predict`."""
        return self.predict_with_run(records)[0]

    def predict_with_run(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, str]:
        """Probabilities and the run id of the model that produced them (the same one even during a swap)."""
        probabilities, bundle = self.predict_with_bundle(records)
        return probabilities, bundle.run_id or ""

    def predict_with_bundle(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, ModelBundle]:
        """Probabilities and the bundle that produced them (read once: a swap cannot split the two)."""
        bundle = self._bundle
        if not records:
            return np.empty(0, dtype=np.float64), bundle
        encoder = bundle.encoder
        if len(records) >= COLUMNAR_MIN_ROWS:
            matrix = encoder.encode_columnar(records)
        else:
            matrix = encoder.encode_records(records)
        return bundle.predict_encoded(matrix), bundle


def remember_served(cache_dir: Path, run_id: str) -> None:
    write_atomic(cache_dir / registry.LAST_SERVED, json.dumps({"run_id": run_id}))


# ---------------------------------------------------------------------------------------------- hot model switch
def load_bundle(settings: Settings, run_id: str) -> ModelBundle:
    """The bundle of `run_id`, from the local cache (downloaded from MLflow first if it is not there)."""
    model_dir = registry.cached_model_dir(settings.model_cache_dir, run_id)
    if not registry.is_complete(model_dir):
        model_dir = registry.download_model(settings, run_id)
    return ModelBundle.from_model_dir(model_dir, run_id=run_id, nthread=1)


def resolve_for_reload(settings: Settings) -> tuple[ModelBundle, str]:
    """Re-resolve RUN_ID / alias against MLflow and load that model (cached for the other workers and restarts)."""
    run_id, why = registry.resolve_and_cache(settings)
    bundle = load_bundle(settings, run_id)
    remember_served(settings.model_cache_dir, run_id)
    return bundle, f"{why}; hot reload"
