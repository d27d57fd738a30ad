"""The HTTP API: POST /predict, GET /health, GET /metrics, GET /openapi.json (Flask, served by gunicorn).

`create_app(settings)` builds the app without side effects at import; `main()` (`python -m server.predict_api`)
runs it under gunicorn on API_HOST:API_PORT with API_WORKERS workers, each loading the model once after the fork.

Every bad input is an answer, never a crash: a 4xx JSON body `{"error", "field", "reason"}` (plus `index` for a
record of a batch). A catch-all turns a true bug into a JSON 500 without a stack trace. Every response carries
`X-Request-ID` (the client's, if it sent a sane one, else a new one).

Access (server.access): `x-api-key` when API_KEY is set (always with env=cloud), RATE_LIMIT per key -> 429; a
refused call never reaches the model or the prediction log. Hot reload: `POST /admin/reload` (behind the key)
re-resolves RUN_ID / alias, loads the model, swaps it atomically, and tells the other workers through a
SwitchBoard file they check on every request; SIGHUP to the gunicorn master does the same from the master.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mlops import json_text
from mlops.outcomes import REQUEST_ID_PATTERN, SANE_REQUEST_ID
from mlops.prediction_log import make_entry, new_id, utc_now_iso
from mlops.settings import Settings, load_settings
from mlops.spec import FeatureSpec
from server.request_body import drain_unread_body, read_body
from server.sinks import submit_all

if TYPE_CHECKING:
    from server.model_service import ModelService
    from server.sinks import PredictionSink

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # the header as WSGI names it
LOAD_RETRY_S = 5.0
STATE_KEY = "churn_api"
MAX_SAFE_INTEGER = 2**53 - 1


class ApiError(Exception):
    """A client error with the HTTP status, the field at fault (or None) and the reason."""

    def __init__(self, status: int, error: str, reason: str, field: str | None = None, index: int | None = None):
        super().__init__(reason)
        self.status, self.error, self.reason, self.field, self.index = status, error, reason, field, index

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "field": self.field, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


@lru_cache(maxsize=1)
def api_metrics() -> Any:
    """Created once per process, on first use (after PROMETHEUS_MULTIPROC_DIR is set by `main`)."""
    from prometheus_client import Counter, Gauge, Histogram

    class Metrics:
        requests = Counter("predict_api_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"])
        latency = Histogram(
            "predict_api_request_duration_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        predictions = Histogram(
            "predict_api_prediction_churn_chance",
            "Predicted churn chance of every record answered",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
        )
        records = Counter("predict_api_predicted_records_total", "Records scored (a batch counts each record)")
        model_info = Gauge(
            "predict_api_model_info",
            "The model being served (1 for the loaded run id)",
            ["run_id", "source"],
            multiprocess_mode="livemax",
        )
        model_loaded = Gauge("predict_api_model_loaded", "1 once this worker has a model", multiprocess_mode="livemin")

    return Metrics


class Scored(NamedTuple):
    """What one scoring step produced: the validated records, their probabilities, the run and spec behind them."""

    records: list[dict[str, Any]]
    probabilities: Any  # np.ndarray of float64, in the records' order
    run_id: str
    spec: FeatureSpec


class ApiState:
    """What the app holds: settings, the (possibly not yet loaded) service and the sinks."""

    def __init__(self, settings: Settings, service: ModelService | None, sinks: Sequence[PredictionSink]):
        self.settings = settings
        self.service = service
        self.switch: Any = None  # SwitchBoard shared by the workers of one server (None in-process)
        self.shadow: Any = None  # ShadowScorer when SHADOW_MODEL is set
        self._switch_lock = threading.Lock()
        self.sinks: list[PredictionSink] = list(sinks)
        self.load_error: str | None = None
        self.internal_errors = 0  # true bugs answered with a 500; tests assert bad inputs never get here
        self._stop = threading.Event()
        self.metrics_registry: Any = None
        if service is not None:
            _publish_model(service)

    def load_in_background(self) -> None:
        """Load the model off the request path, retrying until MLflow (or the cache) gives one."""

        def load() -> None:
            from server.model_service import ModelService

            while not self._stop.is_set():
                try:
                    self.service = ModelService.from_settings(self.settings)
                except Exception as error:  # MLflow down, no alias yet, ...: /health says why
                    if self._stop.is_set():
                        return  # closed meanwhile (worker exit): nothing to say, maybe no log stream left
                    first_line = (str(error).strip().splitlines() or [""])[0][:500]
                    self.load_error = f"{type(error).__name__}: {first_line}"
                    log.warning("model not loaded yet (retrying in %.0fs): %s", LOAD_RETRY_S, self.load_error)
                    self._stop.wait(LOAD_RETRY_S)
                    continue
                self.load_error = None
                _publish_model(self.service)
                self.follow_switch()
                return

        threading.Thread(target=load, name="model-loader", daemon=True).start()

    def follow_switch(self) -> None:
        """Apply a reload another worker published (one stat per call when nothing changed)."""
        if self.switch is None or self.service is None or self.switch.pending() is None:
            return
        from server.model_service import load_bundle

        with self._switch_lock:
            order = self.switch.pending()
            if order is None or self.service is None:
                return
            try:
                if order["run_id"] != self.service.run_id:
                    self.service.swap(load_bundle(self.settings, order["run_id"]), str(order.get("source", "reload")))
                    _publish_model(self.service)
            except Exception as error:  # keep serving the model we have; say why once per order
                log.error(
                    "hot reload to run %s failed, still serving %s: %s", order["run_id"], self.service.run_id, error
                )
            self.switch.applied(order)

    def reload(self, fresh: Settings) -> dict[str, Any]:
        """Re-resolve and load the model of `fresh` settings, publish it to the other workers, then swap ours."""
        from server.model_service import ModelService, resolve_for_reload

        bundle, source = resolve_for_reload(fresh)
        with self._switch_lock:
            previous = self.service.run_id if self.service else None
            order = self.switch.publish(bundle.run_id or "", source) if self.switch is not None else None
            if self.service is None:
                self.service = ModelService(bundle, source, allow_unknown=fresh.accept_unknown_fields)
            else:
                self.service.swap(bundle, source)
            if order is not None:
                self.switch.applied(order)
            _publish_model(self.service)
        return {
            "model_run_id": bundle.run_id,
            "previous_run_id": previous,
            "source": source,
            "generation": order["generation"] if order else None,
        }

    def close(self, timeout: float = 5.0) -> None:
        from server.sinks import close_all

        self._stop.set()
        if self.shadow is not None:
            self.shadow.close()
        close_all(self.sinks, timeout)


def _publish_model(service: ModelService) -> None:
    metrics = api_metrics()
    metrics.model_info.labels(run_id=service.run_id, source=service.source).set(1)
    metrics.model_loaded.set(1)


def default_sinks(settings: Settings, state: ApiState) -> list[PredictionSink]:
    """The prediction log always; the drift service when DRIFT_SERVICE_URL is set."""
    from mlops.prediction_log import open_prediction_log
    from server.sinks import DriftSink, PredictionLogSink

    sinks: list[PredictionSink] = [PredictionLogSink(open_prediction_log(settings))]
    if settings.drift_service_url:

        def dataset() -> str:
            return state.service.spec.name if state.service else "unknown"

        sinks.append(DriftSink(settings.drift_service_url, dataset))
    return sinks


def create_app(
    settings: Settings,
    service: ModelService | None = None,
    sinks: Sequence[PredictionSink] | None = None,
    multiprocess_dir: Path | None = None,
    switch_file: Path | None = None,
    reread_settings: Callable[[], Settings] | None = None,
) -> Flask:
    """The API. With no `service`, the model loads in a background thread (/health is 503 until it is there).

    `sinks=None` means the defaults of `settings` (prediction log, drift service); pass `[]` for none.
    `multiprocess_dir`: PROMETHEUS_MULTIPROC_DIR when running under gunicorn, so /metrics adds up all workers.
    `switch_file`: the SwitchBoard file the workers of one server share for hot reloads.
    `reread_settings`: fresh settings for `POST /admin/reload` (env file re-read); default: `settings` as given.
    """
    from mlops.contract import RecordError  # imports here, once, rather than in the request path
    from server.access import API_KEY_ENVIRON, AccessDenied, AccessPolicy, install_rate_limit

    access = AccessPolicy(settings)  # refuses env=cloud without API_KEY and a malformed RATE_LIMIT
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = ApiState(settings, service, [])
    state.sinks = list(sinks) if sinks is not None else default_sinks(settings, state)
    if settings.shadow_model:
        from server.shadow import ShadowScorer
        from server.sinks import DriftSink

        logs = [s for s in state.sinks if not isinstance(s, DriftSink)]  # drift watches what clients get
        state.shadow = ShadowScorer(settings, lambda entries: submit_all(logs, entries))
    if switch_file is not None:
        from server.model_service import SwitchBoard

        state.switch = SwitchBoard(switch_file)
    if service is None:
        state.load_in_background()
    if multiprocess_dir is not None:
        from prometheus_client import CollectorRegistry, multiprocess

        state.metrics_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(state.metrics_registry, path=str(multiprocess_dir))
    app.extensions[STATE_KEY] = state
    metrics = api_metrics()

    # ------------------------------------------------------------------ request id, timing, metrics
    @app.before_request
    def start() -> None:
        # the WSGI environ and the request's own `g`, each fetched once: every `request.x` / `g.x` goes through a
        # context-local proxy, and headers by name through a case-folding lookup
        environ = request.environ
        ours = g._get_current_object()
        ours.started = time.perf_counter()
        given = environ.get(REQUEST_ID_ENVIRON, "")
        ours.request_id_sent = bool(given)  # a V2 request's own id counts only when no header came
        ours.request_id = given if SANE_REQUEST_ID.match(given) else new_id()
        access.check(request.path, environ.get(API_KEY_ENVIRON))  # before the limiter: refused keys cost nothing

    install_rate_limit(app, settings)  # its before_request runs after `start`

    by_endpoint: dict[tuple[str, int], tuple[Any, Any]] = {}  # the metrics' label children, made once each

    @app.after_request
    def finish(response: Response) -> Response:
        ours = g._get_current_object()
        response.headers[REQUEST_ID_HEADER] = getattr(ours, "request_id", None) or new_id()
        if not getattr(ours, "body_read", False):
            drain_unread_body(cap=4 * settings.max_body_bytes)
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "(unmatched)"
        key = (endpoint, response.status_code)
        children = by_endpoint.get(key)
        if children is None:  # routes and statuses are few: this stays small
            children = by_endpoint[key] = (
                metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)),
                metrics.latency.labels(endpoint=endpoint),
            )
        children[0].inc()
        started = getattr(ours, "started", None)
        if started is not None:
            children[1].observe(time.perf_counter() - started)
        return response

    # ------------------------------------------------------------------ errors: always JSON
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[dict[str, Any], int]:
        return error.body(), error.status

    @app.errorhandler(AccessDenied)
    def access_denied(error: AccessDenied) -> tuple[dict[str, Any], int, dict[str, str]]:
        headers = {"WWW-Authenticate": 'ApiKey header="x-api-key"'} if error.status == 401 else {}
        return {"error": error.error, "field": "x-api-key", "reason": error.reason}, error.status, headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[dict[str, Any], int]:
        return ApiError(
            413, "body too large", f"the body may hold at most {settings.max_body_bytes} bytes", "(body)"
        ).body(), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[dict[str, Any], int]:
        status = error.code or 500
        if status == 429:  # flask-limiter; it adds Retry-After and X-RateLimit-* after the request
            reason = f"rate limit of {error.description} per API key exceeded; retry after the Retry-After seconds"
            return {"error": "too many requests", "field": "x-api-key", "reason": reason}, 429
        return {"error": error.name.lower(), "field": None, "reason": error.description}, status

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[dict[str, Any], int]:
        state.internal_errors += 1
        log.exception(
            "unexpected error answering %s %s (request id %s)", request.method, request.path, g.get("request_id")
        )
        return {
            "error": "internal error",
            "field": None,
            "reason": f"unexpected server error; the server log has the details under request id {g.get('request_id')}",
        }, 500

    # ------------------------------------------------------------------ endpoints
    def score(records: list[Any], indexed: bool) -> Scored:
        """Validate, predict, count, log and shadow: every entry point that takes full records (POST /predict,
        the V2 infer) goes through this one step, so they answer, log and count alike."""
        state.follow_switch()
        current = state.service
        if current is None:
            raise ApiError(503, "model not loaded", state.load_error or "the model is still loading", None)
        try:
            valid = current.validate(records, indexed=indexed)
        except RecordError as error:
            raise ApiError(422, "invalid record", error.reason, error.field, error.index) from None
        probabilities, run_id = current.predict_with_run(valid)
        metrics.records.inc(len(valid))
        observe_all = metrics.predictions.observe
        for p in probabilities.tolist():
            observe_all(p)
        id_column = current.spec.id_column
        _to_sinks(state, valid, probabilities, run_id, id_column)
        if state.shadow is not None:
            state.shadow.submit(valid, g.request_id)  # enqueued only: the answer never waits for the shadow
        return Scored(valid, probabilities, run_id, current.spec)

    @app.post("/predict")
    def predict() -> Any:
        records, single = _parse_body(read_body(), settings.max_batch_records)
        valid, probabilities, run_id, spec = score(records, indexed=not single)
        id_column = spec.id_column
        answers = [_answer(p, run_id, record, id_column) for p, record in zip(probabilities, valid, strict=True)]
        return Response(json_text.dumps(answers[0] if single else answers), content_type="application/json")

    @app.get("/health")
    def health() -> tuple[dict[str, Any], int]:
        state.follow_switch()
        current = state.service
        if current is None:
            return {"status": "loading", "reason": state.load_error or "the model is still loading"}, 503
        return {
            "status": "ok",
            "model_run_id": current.run_id,
            "source": current.source,
            "spec": current.spec.name,
        }, 200

    @app.post("/admin/reload")
    def admin_reload() -> tuple[dict[str, Any], int]:
        if not access.admin_allowed():
            raise ApiError(
                403, "admin disabled", "set API_KEY to enable /admin/reload (it is only served behind a key)"
            )
        fresh = reread_settings() if reread_settings is not None else settings
        try:
            answer = state.reload(fresh)
        except Exception as error:  # MLflow down, no alias, artifacts gone: keep serving, say why
            log.warning("hot reload failed, still serving %s: %s", state.service and state.service.run_id, error)
            first = (str(error).strip().splitlines() or [""])[0][:500]
            raise ApiError(
                503, "reload failed", f"{type(error).__name__}: {first}; still serving the previous model"
            ) from None
        log.info("hot reload: %s", answer)
        return answer, 200

    from server.customers_api import register_customers
    from server.outcomes_api import register_outcomes
    from server.v2_api import register_v2

    register_outcomes(app, state, _parse_body, ApiError)
    register_v2(app, state, ApiError, score)

    def observe(probability: float) -> None:
        metrics.records.inc()
        metrics.predictions.observe(probability)

    register_customers(app, state, ApiError, _to_sinks, _answer, observe)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return Response(generate_latest(state.metrics_registry or REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    def openapi() -> Any:
        current = state.service
        if current is None:
            raise ApiError(503, "model not loaded", "the schema comes from the model's spec; it is still loading")
        from mlops.registry import model_name_for
        from server.v2_api import v2_openapi_paths

        document = openapi_document(current.spec, settings.max_batch_records, settings.max_body_bytes)
        document["paths"].update(v2_openapi_paths(current.spec, model_name_for(settings, current.spec)))
        return document

    return app


def record_schema(spec: FeatureSpec) -> dict[str, Any]:
    """JSON Schema of one record, from the spec: every field, its type, its range or its categories."""
    from mlops.contract import FLOAT32_MAX

    properties: dict[str, Any] = {}
    for column, feature in spec.numeric.items():
        schema: dict[str, Any] = {"type": "integer" if feature.type == "int" else "number"}
        # unbounded sides get the 32-bit float range the validator enforces (found by schemathesis: the
        # document promised more than the API takes)
        bound = MAX_SAFE_INTEGER if feature.type == "int" else FLOAT32_MAX  # ints: JSON's exact range
        schema["minimum"] = feature.min if feature.min is not None else -bound
        schema["maximum"] = feature.max if feature.max is not None else bound
        properties[column] = schema
    for column in [*spec.categorical, *spec.ordinal]:
        kind = "ordinal (ordered)" if column in spec.ordinal else "categorical"
        properties[column] = {
            "type": ["string", "null"],
            "enum": [*spec.categories(column), *spec.missing_values, None],
            "description": f"{kind}; matched case-insensitively; null or {spec.missing_values} mean missing",
        }
    if spec.id_column:
        properties[spec.id_column] = {
            "type": ["integer", "string"],
            "description": "optional client id; not a model input",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": spec.feature_columns,
        "additionalProperties": False,
    }


def outcome_schema(spec: FeatureSpec) -> dict[str, Any]:
    """JSON Schema of one outcome (mlops.outcomes), in the canonical spelling of its fields."""
    labels = [spec.target.positive] + ([spec.target.negative] if spec.target.negative else [])
    properties: dict[str, Any] = {
        "request_id": {"type": ["string", "integer"], "pattern": REQUEST_ID_PATTERN},
        "label": {"type": "string", "enum": labels, "description": "matched case-insensitively"},
        "observed_at": {"type": "string", "description": "ISO 8601 date or time (UTC without offset); default now"},
    }
    ways = [{"required": ["request_id"]}]
    if spec.id_column:
        properties[spec.id_column] = {"type": ["string", "integer"], "description": "the customer's id"}
        ways.append({"required": [spec.id_column]})
    return {
        "type": "object",
        "properties": properties,
        "required": ["label"],
        "anyOf": ways,
        "additionalProperties": False,
    }


def openapi_document(spec: FeatureSpec, max_records: int, max_body_bytes: int) -> dict[str, Any]:
    """OpenAPI 3.1 description of this API for the served model's spec (so it can never drift from validation)."""
    error = {"$ref": "#/components/schemas/Error"}
    prediction = {"$ref": "#/components/schemas/Prediction"}

    def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    customer_parameter = {
        "name": "customer_id",
        "in": "path",
        "required": True,
        "description": f"the customer's {spec.id_column or 'id'}",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Churn prediction API ({spec.name})",
            "version": "1",
            "description": "Churn chance of credit-card customers. Every response carries X-Request-ID.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Churn chance of one record, or of a list of records (answered in order)",
                    "requestBody": {
                        "required": True,
                        "description": f"at most {max_body_bytes} bytes",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Record"},
                                            "minItems": 1,
                                            "maxItems": max_records,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": answer("churn chance", {"oneOf": [prediction, {"type": "array", "items": prediction}]}),
                        "400": answer("the body is not JSON, not an object or list, or an empty list", error),
                        "413": answer("the body or the list is too large", error),
                        "422": answer("a record is invalid: the field and the reason are named", error),
                        "503": answer("the model is not loaded yet", error),
                    },
                }
            },
            "/outcomes": {
                "post": {
                    "summary": "Observed outcomes of earlier predictions (one or a list), joined to the predictions",
                    "description": "By request_id (X-Request-ID of /predict, request_id of a Kinesis envelope), "
                    "by the customer id, or both; names in any spelling, the label also under the target's name "
                    f"({spec.target.column}). The same outcome twice counts once.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Outcome"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Outcome"},
                                            "minItems": 1,
                                            "maxItems": max_records,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": answer("what became of each outcome", {"$ref": "#/components/schemas/OutcomeReport"}),
                        "400": answer("the body is not JSON, not an object or list, or an empty list", error),
                        "413": answer("the body or the list is too large", error),
                        "422": answer("an outcome is invalid: the field and the reason are named", error),
                        "503": answer("the outcome store is unavailable (PREDICTION_LOG_URI)", error),
                    },
                }
            },
            "/customers/{customer_id}/churn": {
                "get": {
                    "summary": "Churn chance of one customer from the online store's latest features",
                    "parameters": [customer_parameter],
                    "responses": {
                        "200": answer(
                            "churn chance, and the snapshot (data hash) the features came from",
                            {"$ref": "#/components/schemas/CustomerPrediction"},
                        ),
                        "400": answer("the id is empty or too long", error),
                        "404": answer("no such customer in the online store", error),
                        "409": answer("the stored features no longer fit the served model's spec", error),
                        "503": answer("the model is not loaded, or the online store is down (ONLINE_STORE_URI)", error),
                    },
                }
            },
            "/customers/{customer_id}/features": {
                "get": {
                    "summary": "The online store's latest features of one customer",
                    "parameters": [customer_parameter],
                    "responses": {
                        "200": {"description": "features, snapshot, materialized_at"},
                        "400": answer("the id is empty or too long", error),
                        "404": answer("no such customer in the online store", error),
                        "503": answer("the model is not loaded, or the online store is down (ONLINE_STORE_URI)", error),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "200 once a model is loaded (its run id and where it came from); 503 before",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "model not loaded"}},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "JSON"}}}},
        },
        "components": {
            "schemas": {
                "Record": record_schema(spec),
                "Prediction": {
                    "type": "object",
                    "properties": {
                        "churn chance": {"type": "number", "minimum": 0, "maximum": 1},
                        "model_run_id": {"type": "string"},
                    },
                    "required": ["churn chance", "model_run_id"],
                },
                "CustomerPrediction": {
                    "type": "object",
                    "properties": {
                        "churn chance": {"type": "number", "minimum": 0, "maximum": 1},
                        "model_run_id": {"type": "string"},
                        "snapshot": {"type": "string", "description": "data hash of the features' snapshot"},
                    },
                    "required": ["churn chance", "model_run_id", "snapshot"],
                },
                "Outcome": outcome_schema(spec),
                "OutcomeReport": {
                    "type": "object",
                    "properties": {
                        key: {"type": "integer", "minimum": 0}
                        for key in ("received", "settled", "duplicates", "unknown", "ambiguous", "conflicts")
                    }
                    | {
                        "unknown_keys": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                        "ambiguous_keys": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                        "index": {"type": "integer", "description": "position of the bad record in a batch"},
                    },
                    "required": ["error", "field", "reason"],
                },
            }
        },
    }


def _parse_body(body: bytes, max_records: int) -> tuple[list[Any], bool]:
    """The JSON body as a list of records and whether it was a single object. Every failure is an ApiError."""
    if not body.strip():
        raise ApiError(400, "invalid JSON", "the body is empty; send a JSON object or a list of objects", "(body)")
    try:
        parsed = json_text.loads(body)
    except RecursionError:
        raise ApiError(400, "invalid JSON", "the body is nested too deeply", "(body)") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "invalid JSON", f"the body is not valid JSON: {error}", "(body)") from None
    if isinstance(parsed, dict):
        return [parsed], True
    if isinstance(parsed, list):
        if not parsed:
            raise ApiError(400, "empty list", "send at least one record", "(body)")
        if len(parsed) > max_records:
            raise ApiError(
                413, "too many records", f"a batch may hold at most {max_records} records, got {len(parsed)}", "(body)"
            )
        return parsed, False
    raise ApiError(
        400, "invalid body", f"expected a JSON object or a list of objects, got {type(parsed).__name__}", "(body)"
    )


def _to_sinks(
    state: ApiState, records: list[dict[str, Any]], probabilities: Any, run_id: str, id_column: str | None
) -> None:
    if not state.sinks:
        return
    request_id = g.request_id
    answered = utc_now_iso()  # one call, one moment: every record of a batch is answered at once
    entries = [
        make_entry(r, p, run_id, "http", request_id, answered, customer_id=r.get(id_column) if id_column else None)
        for r, p in zip(records, probabilities, strict=True)
    ]
    submit_all(state.sinks, entries)


def _answer(probability: float, run_id: str, record: dict[str, Any], id_column: str | None) -> dict[str, Any]:
    """One prediction's answer; the record's id (the spec's id column) is echoed when the client sent one."""
    answer: dict[str, Any] = {"churn chance": float(probability), "model_run_id": run_id}
    if id_column is not None and record.get(id_column) is not None:
        answer[id_column] = record[id_column]
    return answer


def close_app(app: Any) -> None:
    """Drain the app's sinks (prediction log, drift); gunicorn calls this when a worker exits."""
    state = getattr(app, "extensions", {}).get(STATE_KEY)
    if state is not None:
        state.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m server.predict_api [--host H] [--port P] [--workers N]`: gunicorn with our config."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m server.predict_api", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=["local", "cloud"], default=None)
    parser.add_argument("--host", default=None, help="default: API_HOST")
    parser.add_argument("--port", type=int, default=None, help="default: API_PORT")
    parser.add_argument("--workers", type=int, default=None, help="default: API_WORKERS")
    args = parser.parse_args(argv)
    overrides = {
        k: v for k, v in {"api_host": args.host, "api_port": args.port, "api_workers": args.workers}.items() if v
    }
    from server.gunicorn_app import run

    run(
        load_settings(args.env, **overrides),
        app_factory=create_app,
        close_app=close_app,
        reread=lambda: load_settings(args.env, **overrides),
    )


if __name__ == "__main__":
    main()
