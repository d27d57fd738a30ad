"""POST /predict: the churn chance of one record, or of a list of records (answered in order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g

from mlops import json_text
from mlops.contract import RecordError
from server.api.body import parse_records, read_body
from server.api.errors import invalid_record

if TYPE_CHECKING:
    from server.api.state import ApiState


def answer_of(
    probability: float, run_id: str, record: dict[str, Any], id_column: str | None, features: Sequence[str] = ()
) -> dict[str, Any]:
    """One prediction's answer; the record's id (the spec's id column) is echoed when the client sent one, and
    `missing` names the `features` the model saw as missing values (absent, null or a missing marker)."""
    answer: dict[str, Any] = {"churn chance": float(probability), "model_run_id": run_id}
    if id_column is not None and record.get(id_column) is not None:
        answer[id_column] = record[id_column]
    missing = [name for name in features if record.get(name) is None]
    if missing:
        answer["missing"] = missing
    return answer


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
        records, single = parse_records(read_body(), max_records)
        try:
            valid, probabilities, run_id, spec = scorer.score(records, g.request_id, indexed=not single)
        except RecordError as error:
            raise invalid_record(error) from None
        id_column, features = spec.id_column, spec.feature_columns
        count_missing(valid, features)
        answers = [
            answer_of(p, run_id, record, id_column, features) for p, record in zip(probabilities, valid, strict=True)
        ]
        return Response(json_text.dumps(answers[0] if single else answers), content_type="application/json")

    return routes
