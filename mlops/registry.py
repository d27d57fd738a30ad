"""The MLflow side: reachability, registering a run's model, choosing which run to serve, a local model cache."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops.aws import ServiceUnavailable
from mlops.model import BOOSTER_FILE, MODEL_ARTIFACT, SPEC_FILE
from mlops.settings import Settings
from mlops.spec import FeatureSpec

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def check_mlflow(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the setting, when the tracking server is not there (instead of MLflow's long retries)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return  # a local file or sqlite store needs no server
    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as error:
        raise ServiceUnavailable(
            f"MLflow is unreachable at MLFLOW_TRACKING_URI={tracking_uri} ({type(error).__name__}); "
            "start it (make setup-model-registry) or fix MLFLOW_TRACKING_URI"
        ) from error


def register(client: MlflowClient, model_uri: str, name: str, run_id: str, alias: str = CHALLENGER) -> str:
    """Register a new version of `name` and point `alias` at it; returns the version number."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="Credit-card churn probability (XGBoost, hyperopt-tuned)")
        except MlflowException as error:  # two training runs at once (a trigger beside a schedule): one creates it
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    # MLflow 3: register through the logged model's URI (models:/m-...), which carries its model id
    mlflow.set_tracking_uri(client.tracking_uri)
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def model_name_for(settings: Settings, spec: FeatureSpec | None = None) -> str:
    """The registered model of the data set these settings serve: MODEL_NAME if set, else the spec's own."""
    if settings.model_name:
        return settings.model_name
    return (spec or FeatureSpec.load(settings.feature_spec)).registered_model_name


def experiment_for(settings: Settings, spec: FeatureSpec | None = None) -> str:
    """The MLflow experiment of the data set's training runs: MLFLOW_EXPERIMENT if set, else the spec's own."""
    if settings.mlflow_experiment:
        return settings.mlflow_experiment
    return (spec or FeatureSpec.load(settings.feature_spec)).experiment_name


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The model version `alias` names, or None when the model or the alias does not exist. Any other MLflow error
    (a 503, a timeout, a permission error) is raised: treating it as "no champion" would make every follower switch
    production to the unvetted challenger during a blip."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if is_absent(error):
            return None
        # MLflow's basic-auth app answers 403 (not 404) for a registered model that does not exist yet: absent
        # only if a search (which authorizes per result) does not find it either
        if getattr(error, "error_code", "") == "PERMISSION_DENIED" and not client.search_registered_models(
            filter_string=f"name = '{name}'"
        ):
            return None
        raise


def is_absent(error: MlflowException) -> bool:
    """MLflow's way of saying "no such model / alias" (and nothing else)."""
    code = getattr(error, "error_code", "")
    message = str(error)
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in message and "not found" in message
    )


def resolve_run_id(settings: Settings, client: MlflowClient | None = None) -> tuple[str, str]:
    """Which run to serve: RUN_ID if set, else the alias `champion`, else `challenger` of the spec's registered
    model (never another data set's). Returns (run_id, why)."""
    if settings.run_id:
        return settings.run_id, "RUN_ID"
    client = client or MlflowClient(settings.mlflow_tracking_uri)
    name = model_name_for(settings)
    for alias in (CHAMPION, CHALLENGER):
        version = alias_version(client, name, alias)  # MLflow down or failing: raised, the current model stays
        if version is None:
            continue
        if version.run_id:
            return version.run_id, f"alias '{alias}' of {name} (version {version.version})"
    raise LookupError(
        f"no model to serve: RUN_ID is empty and {name} has no 'champion' or 'challenger' alias; "
        "train one (make train) or set RUN_ID in .env.<env>"
    )


MODEL_FILES = ("MLmodel", f"artifacts/{BOOSTER_FILE}", f"artifacts/{SPEC_FILE}")


def is_complete(model_dir: Path) -> bool:
    """A model folder is usable only with its booster and spec, not just an MLmodel file."""
    return all((model_dir / name).is_file() for name in MODEL_FILES)


def cached_model_dir(cache_dir: Path, run_id: str) -> Path:
    return cache_dir / run_id / MODEL_ARTIFACT


LAST_SERVED = "last-served.json"  # in the cache folder: the run to fall back on while MLflow is down


def last_served(cache_dir: Path) -> str | None:
    try:
        return json.loads((cache_dir / LAST_SERVED).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


def prune_cache(cache_dir: Path, keep: int, protected: set[str]) -> list[str]:
    """Keep the `keep` most recently downloaded models (and `protected` ones, the last served among them); the
    others leave by rename, then deletion, so no process ever reads half a folder. Returns the run ids removed."""
    folders = sorted(
        (p for p in cache_dir.iterdir() if p.is_dir() and ".stale-" not in p.name and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for folder in folders[keep:]:
        if folder.name in protected:
            continue
        aside = folder.with_name(f"{folder.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        try:
            folder.rename(aside)
        except OSError:
            continue  # another process pruned it first
        shutil.rmtree(aside, ignore_errors=True)
        removed.append(folder.name)
    return removed


def download_model(settings: Settings, run_id: str) -> Path:
    """The run's model folder, from the local cache when present, else downloaded once and cached atomically."""
    target = cached_model_dir(settings.model_cache_dir, run_id)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        downloaded = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/{MODEL_ARTIFACT}", dst_path=scratch)
        )
        if not is_complete(downloaded):
            raise FileNotFoundError(
                f"run {run_id} has no complete model in MLflow at MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri} "
                f"(missing {', '.join(MODEL_FILES)} under {MODEL_ARTIFACT}/artifacts): its artifacts are gone; "
                "train again (make train) or pick another RUN_ID"
            )
        _publish(downloaded, target)
    protected = {run_id, last_served(settings.model_cache_dir) or ""}
    for gone in prune_cache(settings.model_cache_dir, settings.model_cache_keep, protected):
        log.info("model cache: removed %s (MODEL_CACHE_KEEP=%d)", gone, settings.model_cache_keep)
    return target


def _publish(downloaded: Path, target: Path) -> None:
    """Move a complete download into the cache without ever pulling a model from under another process.

    The API and the stream consumer share one cache and may download the same run at once: the first complete
    copy wins and stays; a later one is dropped. Only an incomplete leftover (a crash mid-copy before downloads
    were atomic) is moved aside, by rename, before it is deleted.
    """
    if is_complete(target):
        return
    if target.exists():
        aside = target.with_name(f"{target.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        try:
            target.rename(aside)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(aside, ignore_errors=True)
    try:
        downloaded.rename(target)
    except OSError:  # another process published it between the check and the rename
        if not is_complete(target):
            raise


def resolve_and_cache(settings: Settings) -> tuple[str, str]:
    """Which run to serve (RUN_ID / alias, asked of MLflow, which must answer) with its model in the local cache.

    The one step every model switch starts with: start-up warm-up, SIGHUP in the gunicorn master, /admin/reload.
    Returns (run_id, why).
    """
    check_mlflow(settings.mlflow_tracking_uri, timeout=3)
    run_id, why = resolve_run_id(settings)
    download_model(settings, run_id)
    return run_id, why
