"""One typed settings object for every process of the platform.

Values come from the process environment first, then from `.env.<env>` (`.env.local` or `.env.cloud`), then from
the defaults below, which describe the native runtime on loopback. This is the only module that reads the
environment: everything else receives a `Settings` instance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops.control_plane_settings import CREDENTIAL_FIELDS, ControlPlaneSettings
from mlops.retention_settings import RetentionSettings
from mlops.scale_settings import ScaleSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Values that mean "nobody filled this in": `env=cloud` refuses to start with them.
PLACEHOLDER_SECRETS = {"", "test", "changeme", "change-me", "placeholder", "xxx", "your-key", "your-secret"}


# env=cloud needs these in every process (the drift key where DRIFT_SERVICE_URL is set); mlops/mlflow_server.py more
CLOUD_CREDENTIALS = (
    "mlflow_tracking_username",
    "mlflow_tracking_password",
    "prefect_api_auth_string",
    "drift_service_key",
)


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message names the setting to fix."""


# where a flow run's services and state are (Settings.flow_overrides)
FLOW_OVERRIDE_FIELDS = (
    "aws_endpoint_url",
    "mlflow_tracking_uri",
    "prefect_api_url",
    "state_dir",
    "s3_bucket",
    "run_id",
    "train_threads",
    "seed",
)
# what a flow's `settings_overrides` parameter may change: where its services and state are, and a few knobs of the
# run itself. Anything else (the promotion gate, approval, keys) comes from the flow's own environment, so whoever
# can start a flow run cannot also loosen the gate it goes through.
FLOW_OVERRIDES_ALLOWED = frozenset(
    (*FLOW_OVERRIDE_FIELDS, "model_name", "mlflow_experiment", "batch_input_uri", "batch_output_uri")
)


class Settings(BaseSettings, ControlPlaneSettings, RetentionSettings, ScaleSettings):
    """Endpoints, names and knobs; env var names are the field names in upper case."""

    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8", populate_by_name=True)

    env: Literal["local", "cloud"] = Field(
        default="local", description="local (emulators, loopback) or cloud (real AWS, no endpoint override, real keys)"
    )

    # --- where state lives (native runtime) ---
    state_dir: Path = Field(default=PROJECT_ROOT / ".mlops", description="all native state: databases, logs, caches")

    # --- AWS: S3 feature store and Kinesis streams ---
    aws_region: str = Field(
        default="us-east-1", validation_alias="AWS_DEFAULT_REGION", description="AWS region (env AWS_DEFAULT_REGION)"
    )
    # None: boto3's default chain (instance profile, ~/.aws); emulators get "test" when these are unset.
    aws_access_key_id: str | None = Field(
        default=None, description="empty: boto3's default chain (instance profile, ~/.aws); emulators get 'test'"
    )
    aws_secret_access_key: str | None = Field(default=None, description="empty: boto3's default chain")
    aws_endpoint_url: str | None = Field(
        default="http://127.0.0.1:4566", description="S3 + Kinesis endpoint (moto natively); empty = real AWS"
    )
    s3_bucket: str = Field(default="churn-feature-store", description="feature store bucket")
    kinesis_predictions_stream: str = Field(default="predictions", description="stream the Kinesis consumer reads")
    kinesis_results_stream: str = Field(default="results", description="stream the Kinesis consumer writes answers to")
    kinesis_dead_letter_stream: str = Field(
        default="predictions-dead-letter", description="stream of records that could not be scored, with the reason"
    )
    kinesis_shard_count: int = Field(default=2, description="shards of the streams make init_aws creates")

    # --- MLflow ---
    mlflow_tracking_uri: str = Field(default="http://127.0.0.1:5051", description="MLflow server")
    # Empty: the spec's own (`experiment` / `model_name` in the spec file, else derived from its name), so each data
    # set keeps its registered model; set only to train or serve a spec under another name (tests do).
    mlflow_experiment: str | None = Field(
        default=None, description="empty: the spec's own experiment; set to train a spec under another name"
    )
    model_name: str | None = Field(
        default=None, description="empty: the spec's own registered model; set to serve a spec under another name"
    )
    run_id: str | None = Field(default=None, description="MLflow run whose model is served; empty = alias")

    # --- Prefect ---
    prefect_api_url: str = Field(default="http://127.0.0.1:4200/api", description="Prefect server API")
    train_interval_hours: float = Field(default=24.0, description="schedule of the training deployment")
    report_interval_hours: float = Field(default=3.0, description="schedule of the drift reports deployment")

    # --- batch scoring (batch/): folders or s3:// prefixes; None = s3://<S3_BUCKET>/batch/{input,output} ---
    batch_input_uri: str | None = Field(
        default=None, description="folder or s3:// prefix of account files; empty = s3://<S3_BUCKET>/batch/input"
    )
    batch_output_uri: str | None = Field(
        default=None, description="folder or s3:// prefix for scored files; empty = s3://<S3_BUCKET>/batch/output"
    )
    batch_cron: str = Field(default="0 2 * * *", description="schedule (UTC cron) of the daily batch deployments")

    # --- training ---
    feature_spec: Path = Field(default=PROJECT_ROOT / "features.yaml", description="the data set's feature spec file")
    max_evals: int = Field(default=50, ge=1, description="hyperopt trials per training run")
    seed: int = Field(default=42, description="seed of the data split and the search")
    train_threads: int = Field(default=2, ge=1, description="XGBoost threads while training")

    # --- serving ---
    api_host: str = Field(default="127.0.0.1", description="address the API (and metrics servers) listen on")
    api_port: int = Field(default=9696, description="HTTP API port")
    api_workers: int = Field(default=2, ge=1, description="gunicorn worker processes")
    # gthread threads per worker. Two: one request's socket wait overlaps another's work, and idle keep-alive
    # connections wait in the worker's selector, not in a thread. More only add GIL hand-offs: with 4, p99 at 425
    # req/s was 15-50 ms against 3 ms with 2, for the same throughput (bench/bench_http.py).
    api_threads: int = Field(default=2, ge=1, description="gunicorn gthread threads per worker")
    kinesis_metrics_port: int = Field(default=9697, description="Prometheus port of the Kinesis consumer")
    max_batch_records: int = Field(
        default=1000, ge=1, description="records per request, V2 rows, or GetRecords batch, at most"
    )
    accept_unknown_fields: bool = Field(
        default=False, description="ignore record fields the feature spec does not name instead of refusing them"
    )
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="request body size limit (413 above)")
    api_key: str | None = Field(
        default=None, description="x-api-key every call must carry (required with env=cloud); empty = open"
    )
    api_keys: str | None = Field(
        default=None,
        description="scoped keys, comma-separated key:scope+scope (scopes predict, outcomes, admin), e.g. "
        "k1:predict,k2:predict+outcomes,k3:admin; API_KEY holds all three",
    )
    auth_failure_limit: str = Field(
        default="10/minute", description="failed authentications allowed per client address before 429"
    )
    rate_limit: str | None = Field(default=None, description="per API key, e.g. 600/minute; empty = none")
    rate_limit_storage_uri: str = Field(
        default="memory://",
        description="where RATE_LIMIT counts: memory:// (each worker on its own), redis://host:port (shared, exact)",
    )
    prediction_log_uri: str | None = Field(
        default=None, description="mongodb://... or sqlite:///path; empty = SQLite under STATE_DIR"
    )  # mongodb://... or sqlite:///...; default: SQLite under state_dir
    online_store_uri: str | None = Field(
        default=None, description="latest features per customer: redis://host:port/db or sqlite:///path (default)"
    )
    materialize_interval_hours: float = Field(
        default=6.0, gt=0, description="schedule of the materialize_online_store deployment"
    )
    drift_service_url: str | None = Field(
        default="http://127.0.0.1:8085", description="where every prediction is also sent; empty = no drift service"
    )

    # --- monitoring and reports ---
    drift_host: str = Field(default="127.0.0.1", description="address the drift service listens on")
    drift_port: int = Field(default=8085, description="drift service port")
    reports_dir: Path | None = Field(
        default=None, description="where HTML drift reports are written; empty = STATE_DIR/reports"
    )  # default: state_dir / "reports"
    prometheus_port: int = Field(default=9091, description="Prometheus port (native runtime)")
    reports_port: int = Field(default=8888, description="nginx port serving the reports")
    alertmanager_port: int = Field(default=9093, description="Alertmanager port (native runtime)")
    alert_receiver_port: int = Field(
        default=9095, description="port of the built-in alert webhook receiver (logs every alert it gets)"
    )
    alert_webhook_url: str = Field(
        default="",
        description="where Alertmanager sends alerts (Slack, a pager, any webhook); empty: the built-in receiver",
    )
    alert_receiver_max_bytes: int = Field(
        default=10_000_000, ge=10_000, description="the built-in receiver's alert log is rotated past this size"
    )
    drift_window_size: int = Field(default=2000, ge=10, description="records kept per data set by the drift service")
    drift_min_rows: int = Field(default=300, ge=1, description="below this, drift says 'not enough data'")
    drift_interval_seconds: float = Field(default=10.0, ge=0, description="min seconds between drift computations")
    report_window_hours: float = Field(default=3.0, gt=0, description="predictions a drift report looks back over")
    report_max_rows: int = Field(
        default=100_000,
        ge=100,
        description="a drift report reads at most the window's newest this many predictions (and settlements)",
    )
    report_drivers_sample: int = Field(
        default=5000, ge=1, description="predictions a report explains for its drivers-of-risk section (seeded sample)"
    )

    # --- outcomes and realized performance ---
    outcome_window_size: int = Field(
        default=5000, ge=10, description="newest settled predictions per model run behind the realized metrics"
    )
    outcome_min_labels: int = Field(
        default=200, ge=1, description="below this many settled predictions: 'not enough outcomes', no figures"
    )
    realized_auc_floor: float = Field(
        default=0.7, ge=0, le=1, description="the RealizedRocAucBelowFloor alert fires under this realized ROC AUC"
    )
    # --- promotion (model_orchestration/promote_flow.py) and serving that follows the registry ---
    promotion_min_roc_auc: float = Field(default=0.7, ge=0, le=1, description="gate: the challenger's ROC AUC floor")
    promotion_max_brier: float = Field(default=0.25, ge=0, le=1, description="gate: the challenger's Brier ceiling")
    promotion_min_uplift: float = Field(
        default=0.0, ge=-1, le=1, description="gate: challenger ROC AUC minus champion ROC AUC, on the same rows"
    )
    promotion_min_outcomes: int = Field(
        default=200, ge=1, description="settled outcomes needed to judge on live rows (else the test set)"
    )
    promotion_approval: Literal["auto", "manual"] = Field(
        default="auto", description="manual: a passed gate waits for make promote APPROVE=<version>"
    )
    shadow_model: str | None = Field(
        default=None, description="challenger, champion or a run id: also scored off the request path, logged only"
    )
    model_poll_seconds: float = Field(
        default=30.0, ge=0, description="RUN_ID empty: seconds between checks of the alias (0: never follow it)"
    )
    retrain_triggers: bool = Field(default=True, description="the drift service may start training runs")
    retrain_drift_share: float = Field(default=0.5, ge=0, le=1, description="drift share that counts as moved data")
    retrain_drift_computations: int = Field(default=3, ge=1, description="consecutive drifted computations needed")
    retrain_cooldown_hours: float = Field(default=24.0, ge=0, description="at most one triggered run per this")
    retrain_min_production_rows: int = Field(
        default=500,
        ge=1,
        description="a triggered retraining builds a snapshot from production's settled rows when at least this many "
        "exist (else it trains on the current snapshot and says why)",
    )
    retrain_max_production_rows: int = Field(
        default=200_000, ge=1, description="newest settled production rows a snapshot from production takes"
    )
    retrain_auto_promote: bool = Field(
        default=False, description="a triggered training run puts its challenger through the promotion gate"
    )
    performance_interval_seconds: float = Field(
        default=15.0, ge=0.1, description="seconds between two computations of the realized metrics"
    )

    @field_validator(
        "aws_endpoint_url",
        "run_id",
        "api_key",
        "api_keys",
        "rate_limit",
        "prediction_log_uri",
        "online_store_uri",
        "shadow_model",
        "drift_service_url",
        "model_name",
        "mlflow_experiment",
        *CREDENTIAL_FIELDS,
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cloud_means_real_aws(self) -> Settings:
        if self.env == "cloud":
            if self.aws_endpoint_url:
                raise ConfigurationError(
                    f"env=cloud talks to real AWS, but AWS_ENDPOINT_URL={self.aws_endpoint_url} is set: "
                    "remove it from .env.cloud and the environment"
                )
            for name in ("aws_access_key_id", "aws_secret_access_key"):
                value = getattr(self, name)
                if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ConfigurationError(
                        f"env=cloud needs real AWS credentials: {name.upper()} is a placeholder; "
                        "set it in the environment (never in the repo)"
                    )
            self._cloud_needs_control_plane_credentials()
        return self

    def _cloud_needs_control_plane_credentials(self) -> None:
        """env=cloud: no control plane open to whoever reaches it; every process refuses to start without them."""
        for name in CLOUD_CREDENTIALS:
            value = getattr(self, name)
            if (value is None or value.strip().lower() in PLACEHOLDER_SECRETS) and (
                name != "drift_service_key" or self.drift_service_url
            ):
                raise ConfigurationError(
                    f"env=cloud needs {name.upper()}: the control planes refuse anonymous callers in the cloud; "
                    "set it in the environment (GitHub secrets), never in the repo (docs/security.md)"
                )
        if self.prefect_api_auth_string and ":" not in self.prefect_api_auth_string:
            raise ConfigurationError("PREFECT_API_AUTH_STRING must be user:password")

    @cached_property
    def prediction_log_location(self) -> str:
        """The prediction store URI, defaulting to an embedded SQLite file."""
        return self.prediction_log_uri or f"sqlite:///{self.state_dir / 'predictions.sqlite'}"

    @cached_property
    def online_store_location(self) -> str:
        """The online store URI, defaulting to an embedded SQLite file beside the prediction log."""
        return self.online_store_uri or f"sqlite:///{self.state_dir / 'online.sqlite'}"

    @cached_property
    def reports_location(self) -> Path:
        return self.reports_dir or self.state_dir / "reports"

    @property
    def model_cache_dir(self) -> Path:
        return self.state_dir / "model-cache"

    def flow_overrides(self, **changes: Any) -> dict[str, Any]:
        """The fields a flow run needs to reach the same services and state as these settings, as JSON values (a
        Prefect parameter), plus `changes`: the `settings_overrides` tests and benchmarks give a flow to run it
        against their own servers."""
        picked = {name: getattr(self, name) for name in FLOW_OVERRIDE_FIELDS} | changes
        return {name: str(value) if isinstance(value, Path) else value for name, value in picked.items()}

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes (supervisord programs, test servers).

        None is left out where it is the default, and exported as an empty string (read back as None) where
        the default is something else, such as DRIFT_SERVICE_URL or AWS_ENDPOINT_URL.
        """
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            key = field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
            value = getattr(self, name)
            if value is None and field.default is None:
                continue
            env[key] = "" if value is None else str(value)
        return env


class _EnvChoice(BaseSettings):
    """Reads only ENV, to know which `.env.<env>` file to load."""

    model_config = SettingsConfigDict(extra="ignore")
    env: str = "local"


def env_file_for(env: str, root: Path = PROJECT_ROOT) -> Path:
    return root / f".env.{env}"


def load_settings(env: str | None = None, **overrides: object) -> Settings:
    """Build settings for `env` (local/cloud): environment > `.env.<env>` > defaults > nothing.

    `overrides` win over everything; tests use them to point at their own servers.
    """
    chosen = env or _EnvChoice().env
    if chosen not in ("local", "cloud"):
        raise ConfigurationError(f"env must be 'local' or 'cloud', got {chosen!r}")
    env_file = env_file_for(chosen)
    try:
        settings = Settings(_env_file=env_file if env_file.exists() else None, env=chosen, **overrides)  # type: ignore[call-arg]
    except ConfigurationError:
        raise
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        raise ConfigurationError(f"invalid settings (from environment or {env_file.name}): {error}") from error
    _credentials_reach_the_clients(settings, set(overrides))
    return settings


def _credentials_reach_the_clients(settings: Settings, given: set[str]) -> None:
    """MLflow's client reads its credentials from the process environment only: ones read from `.env.<env>` are
    put there (never replacing a value already set, nor a caller's override). Prefect's: prefect_api.prefect_at."""
    for name in ("mlflow_tracking_username", "mlflow_tracking_password"):
        value = getattr(settings, name)
        if value and name not in given:
            os.environ.setdefault(name.upper(), value)


def load_flow_settings(env: str | None, overrides: Mapping[str, Any] | None) -> Settings:
    """`load_settings` for a flow run: its `settings_overrides` parameter limited to FLOW_OVERRIDES_ALLOWED."""
    given = dict(overrides or {})
    refused = sorted(set(given) - FLOW_OVERRIDES_ALLOWED)
    if refused:
        raise ConfigurationError(
            f"settings_overrides may not set {', '.join(refused)}: a flow parameter may only change "
            f"{', '.join(sorted(FLOW_OVERRIDES_ALLOWED))}; set the others in the flow's environment"
        )
    return load_settings(env, **given)
