"""The feature spec: which columns a data set has, what they mean and how they become model inputs.

The spec is the single description of a data set. Cleaning, validation, encoding, the model's signature and the
API's schema are all derived from it, and the *resolved* spec (with categories learned from training data filled
in) is logged with every model, so serving never re-derives anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_NON_WORD = re.compile(r"[^0-9a-z]+")


class SpecError(ValueError):
    """The spec file itself is wrong; the message names the file and the field."""


def normalize_name(column: str) -> str:
    """`Customer_Age` / `customer age` / ` CUSTOMER-AGE ` -> `customer_age`."""
    return _NON_WORD.sub("_", str(column).strip().lower()).strip("_")


class NumericFeature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "float"] = "float"
    min: float | None = None
    max: float | None = None


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    positive: str
    negative: str | None = Field(default=None, description="None: every label but `positive` is negative")


class FeatureSpec(BaseModel):
    """A data set's schema. Column names are stored normalized (lower snake case)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    # The registered model and the MLflow experiment of this data set (default: derived from `name`), so training
    # one data set never moves another's aliases.
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    experiment: str | None = None
    id_column: str | None = None
    # Repeated ids in training data: stop with the count and examples (error), or keep the last row of each id,
    # or drop every row of a repeated id.
    duplicate_ids: Literal["error", "keep_last", "drop"] = "error"
    target: Target
    drop: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=list)
    # Features that may not be missing (null, "" or a missing marker); every other feature may be.
    required: list[str] = Field(default_factory=list)
    numeric: dict[str, NumericFeature] = Field(default_factory=dict)
    # None: the categories are learned from the training data and stored in the resolved spec.
    categorical: dict[str, list[str] | None] = Field(default_factory=dict)
    ordinal: dict[str, list[str]] = Field(default_factory=dict)
    # an ordinal feature may also come as the integer code of its position in the order above, counted from this
    ordinal_codes_start: int = Field(default=0, ge=0, le=1)

    def ordinal_code(self, column: str, value: Any) -> str | None:
        """The category an ordinal code names (an int, a whole float or a string of digits), or None."""
        order = self.ordinal.get(column)
        if order is None or isinstance(value, bool):
            return None
        if isinstance(value, str):
            value = value.strip()
            if not value.isdigit():
                return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not number.is_integer():
            return None
        position = int(number) - self.ordinal_codes_start
        return order[position] if 0 <= position < len(order) else None

    @model_validator(mode="before")
    @classmethod
    def _normalize_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("id_column"):
            data["id_column"] = normalize_name(data["id_column"])
        if isinstance(data.get("target"), dict):
            data["target"] = {**data["target"], "column": normalize_name(data["target"].get("column", ""))}
        data["drop"] = [normalize_name(c) for c in data.get("drop") or []]
        data["required"] = [normalize_name(c) for c in data.get("required") or []]
        for section in ("numeric", "categorical", "ordinal"):
            block = data.get(section) or {}
            if not isinstance(block, dict):
                raise ValueError(f"'{section}' must be a mapping of column name to its description")
            data[section] = {
                normalize_name(k): (NumericFeature() if section == "numeric" and v is None else v)
                for k, v in block.items()
            }
            if section != "numeric":
                data[section] = {
                    k: ([str(x) for x in v] if isinstance(v, list) else v) for k, v in data[section].items()
                }
        data["missing_values"] = [str(v) for v in data.get("missing_values") or []]
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> FeatureSpec:
        seen: dict[str, str] = {}
        for section in ("numeric", "categorical", "ordinal"):
            for column in getattr(self, section):
                if column in seen:
                    raise ValueError(f"column '{column}' is in both '{seen[column]}' and '{section}'")
                seen[column] = section
        if not seen:
            raise ValueError("the spec declares no feature (numeric, categorical or ordinal)")
        for special in (self.target.column, self.id_column):
            if special and special in seen:
                raise ValueError(f"column '{special}' is the target or id and cannot also be a feature")
        for column in self.required:
            if column not in seen:
                raise ValueError(f"required column '{column}' is not a feature of the spec")
        for column, values in {**self.ordinal, **{k: v for k, v in self.categorical.items() if v}}.items():
            if not values:
                raise ValueError(f"'{column}' lists no values")
            lowered = [v.lower() for v in values]
            if len(set(lowered)) != len(lowered):
                raise ValueError(f"'{column}' lists a value twice (values are matched case-insensitively)")
        return self

    # ----- derived views -----
    @property
    def registered_model_name(self) -> str:
        """The MLflow registered model of this data set: `model_name`, else `<name>-model`."""
        return self.model_name or f"{self.name.replace('_', '-')}-model"

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment of this data set's training runs: `experiment`, else `<name>-tuning`."""
        return self.experiment or f"{self.name.replace('_', '-')}-tuning"

    @property
    def feature_columns(self) -> list[str]:
        """Model input columns in a fixed order: numeric, categorical, ordinal (as declared)."""
        return [*self.numeric, *self.categorical, *self.ordinal]

    @property
    def required_raw_columns(self) -> list[str]:
        return [*self.feature_columns, self.target.column]

    @property
    def is_resolved(self) -> bool:
        return all(values for values in self.categorical.values())

    def column_kind(self, column: str) -> str:
        for section in ("numeric", "categorical", "ordinal"):
            if column in getattr(self, section):
                return section
        raise KeyError(column)

    def categories(self, column: str) -> list[str]:
        values = self.categorical.get(column) if column in self.categorical else self.ordinal.get(column)
        if values is None:
            raise KeyError(f"'{column}' has no categories (spec not resolved)")
        return values

    def resolve(self, observed: dict[str, Iterable[str]]) -> FeatureSpec:
        """Fill learned categories (sorted, stable) for categorical columns declared without values."""
        categorical = {
            column: values if values else sorted({str(v) for v in observed.get(column, [])})
            for column, values in self.categorical.items()
        }
        for column, values in categorical.items():
            if not values:
                raise SpecError(f"categorical column '{column}' has no observed value to learn categories from")
        return self.model_copy(update={"categorical": categorical})

    # ----- IO -----
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.model_validate(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        path = Path(path)
        if not path.exists():
            raise SpecError(f"feature spec {path} does not exist (setting FEATURE_SPEC)")
        try:
            raw = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise SpecError(f"feature spec {path} is not valid YAML/JSON: {error}") from error
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in error.errors())
            raise SpecError(f"feature spec {path} is invalid: {problems}") from error
