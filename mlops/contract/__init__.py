"""The record contract: what a valid record of a data set is, decided once for every entry point.

Training data and batch files come in as frames (`clean`), the HTTP API, the Kinesis consumer and the drift service
get records (`RecordValidator`); the pyfunc cleans frames. Both paths apply the same rules from the spec, word for
word the same reasons:

- column names in any spelling (`Customer_Age`, `customer age`): the spec's normalization;
- the id column is kept (and echoed by every answer); the spec's `drop` columns and the target are ignored;
- a field named nowhere in the spec is refused, naming it (`allow_unknown` relaxes that);
- a missing value (null, "", one of the spec's missing markers, or the feature absent) is accepted for any feature
  unless the spec lists it under `required`; XGBoost routes missing values natively; a record with no feature at
  all is refused, and training data must carry every feature column;
- an ordinal feature also takes the integer code of its position in the spec's order (from `ordinal_codes_start`);
- numbers may come as numeric strings (as in CSV files); anything else is refused with the field and the value;
  NaN and infinity are refused; `int` features must be whole; `min` / `max` bounds hold in training and serving;
- categories match case-insensitively and come out in the spec's spelling; an unseen one is refused.

The record path is compiled once per spec into plain lookups (a request costs dict lookups, not spec traversals);
the frame path is vectorized. tests/unit/test_contract.py checks that the two agree on every rule.
"""

from mlops.contract.frame import clean
from mlops.contract.record import RecordValidator, validate_record, validator_for
from mlops.contract.rules import FLOAT32_MAX, LABEL, DataError, RecordError, json_type

__all__ = [
    "FLOAT32_MAX",
    "LABEL",
    "DataError",
    "RecordError",
    "RecordValidator",
    "clean",
    "json_type",
    "validate_record",
    "validator_for",
]
