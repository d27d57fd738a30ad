"""POST /predict: the churn chance of one record, or of a list of records (answered in order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g, request

from mlops import json_text
from mlops.contract import RecordError
from mlops.explain import ExplainError, explain_count
from server.api.body import parse_records, read_body
from server.api.errors import ApiError, invalid_record

if TYPE_CHECKING:
    from server.api.state import ApiState


def answer_of(
    probability: float,
    run_id: str,
    record: dict[str, Any],
    id_column: str | None,
    features: Sequence[str] = (),
    explanation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One prediction's answer; the record's id (the spec's id column) is echoed when the client sent one,
    `missing` names the `features` the model saw as missing values (absent, null or a missing marker), and
    `explanation` holds the reasons when they were asked for (mlops.explain)."""
    answer: dict[str, Any] = {"churn chance": float(probability), "model_run_id": run_id}
    if id_column is not None and record.get(id_column) is not None:
        answer[id_column] = record[id_column]
    missing = [name for name in features if record.get(name) is None]
    if missing:
        answer["missing"] = missing
    if explanation is not None:
        answer["explanation"] = explanation
    return answer


def explain_asked(value: Any, field: str = "explain") -> int:
    """The reasons a request asks for (`?explain=k`, V2's parameter, a body field): a count, or a 400 naming the
    field."""
    try:
        return explain_count(value)
    except ExplainError as error:
        raise ApiError(400, "invalid explain", str(error), field) from None


def count_missing(records: Sequence[dict[str, Any]], features: Sequence[str]) -> None:
    """predict_api_missing_features_total{feature}: predictions made with that feature missing (labels: the spec's
    features only, so the set is bounded)."""
    from server.api.metrics import api_metrics

    counter = api_metrics().missing_features
    for name in features:
        count = sum(1 for record in records if record.get(name) is None)
        if count:
            counter.labels(feature=name).inc(count)


def predict_blueprint(state: ApiState) -> Blueprint:
    routes = Blueprint("predict", __name__)
    scorer, max_records = state.scorer, state.settings.max_batch_records

    @routes.post("/predict")
    def predict() -> Response:
        explain = explain_asked(request.args.get("explain"))
        records, single = parse_records(read_body(), max_records)
        try:
            scored = scorer.score(records, g.request_id, indexed=not single)
        except RecordError as error:
            raise invalid_record(error) from None
        id_column, features = scored.spec.id_column, scored.spec.feature_columns
        count_missing(scored.records, features)
        reasons = scored.explain(explain) if explain else [None] * len(scored.records)
        answers = [
            answer_of(p, scored.run_id, record, id_column, features, why)
            for p, record, why in zip(scored.probabilities, scored.records, reasons, strict=True)
        ]
        return Response(json_text.dumps(answers[0] if single else answers), content_type="application/json")

    return routes
