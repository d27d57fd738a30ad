"""Score blocks of raw files: bytes in, one Parquet output per input file, a result record per file.

This is the one scoring routine of both engines (the embedded process pool and Spark's `mapInPandas`), so they
cannot disagree. A block of small files is parsed with pyarrow, cleaned by `mlops.data.clean` and encoded as one
frame, and scored with ONE `inplace_predict`; only when the block fails validation are its files cleaned one by one,
so every bad file is rejected with its own `DataError` message while the good ones in the block are still scored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import xgboost as xgb

from mlops.data import DataError, clean
from mlops.explain import explain_encoded
from mlops.model import ModelBundle
from mlops.spec import FeatureSpec, normalize_name

PROBABILITY = "churn_probability"
AGGREGATE_FUNCTIONS = ("mean", "min", "max", "sum", "std", "median")


# ------------------------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class ModelPayload:
    """A model as plain bytes: cheap to pickle into pool workers and to broadcast to Spark executors."""

    booster_raw: bytes
    spec_json: str
    run_id: str

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, run_id: str | None = None) -> ModelPayload:
        chosen = run_id or bundle.run_id
        if not chosen:
            raise ValueError("the model has no run id; batch outputs are filed under it, so one is required")
        return cls(bytes(bundle.booster.save_raw("ubj")), bundle.spec.to_json(), chosen)

    def load(self) -> ModelBundle:
        """One single-threaded booster per worker process: workers, not threads, use the cores."""
        booster = xgb.Booster(params={"nthread": 1})
        booster.load_model(bytearray(self.booster_raw))
        return ModelBundle(booster=booster, spec=FeatureSpec.from_json(self.spec_json), run_id=self.run_id)


# ------------------------------------------------------------------------------------------------------- aggregates
@dataclass(frozen=True)
class Aggregate:
    """A per-file feature over a numeric spec column, e.g. `mean:credit_limit` -> column `file_mean_credit_limit`."""

    function: str
    column: str

    @property
    def output_column(self) -> str:
        return f"file_{self.function}_{self.column}"


def parse_aggregates(texts: Sequence[str], spec: FeatureSpec) -> list[Aggregate]:
    """`["mean:credit_limit", "max:total_trans_ct"]` -> aggregates; only numeric columns of the spec are allowed."""
    out = []
    for text in texts:
        function, sep, column = str(text).partition(":")
        function, column = function.strip().lower(), normalize_name(column)
        if not sep or function not in AGGREGATE_FUNCTIONS:
            raise ValueError(f"aggregate {text!r}: expected FUNCTION:COLUMN with FUNCTION in {AGGREGATE_FUNCTIONS}")
        if column not in spec.numeric:
            raise ValueError(f"aggregate {text!r}: '{column}' is not a numeric column of spec '{spec.name}'")
        out.append(Aggregate(function, column))
    return out


# ---------------------------------------------------------------------------------------------------------- reading
def column_types(spec: FeatureSpec) -> dict[str, pa.DataType]:
    """Arrow types of the spec's feature columns (by normalized name), for CSV reads that skip type inference."""
    types: dict[str, pa.DataType] = {}
    for column, feature in spec.numeric.items():
        types[column] = pa.int64() if feature.type == "int" else pa.float64()
    for column in [*spec.categorical, *spec.ordinal]:
        types[column] = pa.string()
    return types


def _typed_read(data: bytes, types: Mapping[str, pa.DataType]) -> pa.Table | None:
    """The CSV read with the spec's types (half the time of inferring them on a 200-row file); None when a value
    does not fit its type (text in a number column, "45.5" in an integer one): the inferring read then takes the
    file as it is and `clean` names the bad value."""
    header = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    try:
        raw_names = next(csv.reader([header]))
    except (csv.Error, StopIteration):
        return None
    chosen = {raw: types[normalize_name(raw)] for raw in raw_names if normalize_name(raw) in types}
    try:
        return pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(use_threads=False),
            convert_options=pa_csv.ConvertOptions(null_values=[""], strings_can_be_null=True, column_types=chosen),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None


def parse_file(name: str, data: bytes, types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """Raw bytes -> a raw Arrow table with normalized column names; CSV as `mlops.data.read_raw` reads it ("" =
    missing). A table, not a data frame: a block of files becomes one frame at once (`score_frames`), since turning
    each 200-row file into pandas on its own cost more than parsing it. `types` (`column_types(spec)`): the spec's
    columns are read as those types when every value fits."""
    if not data:
        raise DataError(f"data file {name} is empty")
    try:
        if name.lower().endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
        elif types and (typed := _typed_read(data, types)) is not None:
            table = typed
        else:
            table = pa_csv.read_csv(
                io.BytesIO(data),
                # one thread: the engine's workers are what use the cores
                read_options=pa_csv.ReadOptions(use_threads=False),
                convert_options=pa_csv.ConvertOptions(null_values=[""], strings_can_be_null=True),
            )
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataError(f"data file {name} cannot be read as {_format(name)}: {error}") from error
    if table.num_rows == 0:
        raise DataError(f"data file {name} has a header but no rows")
    return _named(table)


def _named(table: pa.Table) -> pa.Table:
    try:
        names = [normalize_name(c) for c in table.column_names]
    except UnicodeDecodeError as error:  # Arrow decodes the names only when asked
        raise DataError(f"the column names are not UTF-8 text ({error.reason} at byte {error.start})") from None
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"column(s) {duplicated} appear twice (names are compared case-insensitively)")
    return table.rename_columns(names)


def parse_block(
    files: Sequence[tuple[str, bytes]], types: Mapping[str, pa.DataType] | None = None
) -> list[tuple[str, pa.Table | DataError]]:
    """Each file's raw table (as `parse_file`) or its `DataError`, in order. CSV files with the same header line
    and no newline inside a value are parsed as ONE buffer and split by their row counts: a 200-row file cost
    ~0.9 ms parsed on its own and ~0.2 ms as one of 50 (the CSV reader's per-call cost dominates small files).
    Anything else, a group whose typed read fails, or a row count that does not add up, is parsed file by file, so
    every bad file still gets its own message."""
    found: dict[str, pa.Table | DataError] = {}
    groups: dict[bytes, list[tuple[str, bytes, bytes, int]]] = {}
    for name, data in files:
        simple = _simple_csv(name, data) if types else None
        if simple is None:
            found[name] = _parse_one(name, data, types)
        else:
            header, body, rows = simple
            groups.setdefault(header, []).append((name, data, body, rows))
    for header, members in groups.items():
        split = _parse_group(header, members, types) if len(members) > 1 and types is not None else None
        if split is None:
            split = {name: _parse_one(name, data, types) for name, data, _, _ in members}
        found.update(split)
    return [(name, found[name]) for name, _ in files]


def _parse_one(name: str, data: bytes, types: Mapping[str, pa.DataType] | None) -> pa.Table | DataError:
    try:
        return parse_file(name, data, types)
    except DataError as error:
        return error
    except Exception as error:  # whatever the bytes reach in a reader: this file is rejected, the others go on
        return DataError(f"data file {name} cannot be read: {type(error).__name__}: {error}")


def _simple_csv(name: str, data: bytes) -> tuple[bytes, bytes, int] | None:
    """(header line, body ending in a newline, rows) of a CSV whose rows are its non-empty lines, else None. A line
    holding an odd number of quote characters ends inside a quoted value (a newline in a value; "" inside quotes
    counts twice): such a file, one with a byte-order mark, or one without rows, is parsed on its own."""
    if name.lower().endswith(".parquet") or data.startswith(b"\xef\xbb\xbf"):
        return None
    header, newline, body = data.partition(b"\n")
    if not newline or header.count(b'"') % 2:
        return None
    rows = 0
    for line in body.split(b"\n"):
        if line.count(b'"') % 2:
            return None
        if line and line != b"\r":  # the reader skips empty lines
            rows += 1
    if not rows:
        return None
    return header, body if body.endswith(b"\n") else body + b"\n", rows


def _parse_group(
    header: bytes, members: Sequence[tuple[str, bytes, bytes, int]], types: Mapping[str, pa.DataType]
) -> dict[str, pa.Table] | None:
    """One typed read of the files' bodies under their shared header, sliced back into files; None when the read
    fails or the rows do not add up (then each file is parsed on its own)."""
    table = _typed_read(b"".join([header, b"\n", *(body for _, _, body, _ in members)]), types)
    if table is None or table.num_rows != sum(rows for _, _, _, rows in members):
        return None
    try:
        table = _named(table)
    except DataError:
        return None
    split: dict[str, pa.Table] = {}
    start = 0
    for name, _, _, rows in members:
        split[name] = table.slice(start, rows)
        start += rows
    return split


def _format(name: str) -> str:
    return "Parquet" if name.lower().endswith(".parquet") else "CSV"


# ---------------------------------------------------------------------------------------------------------- scoring
@dataclass
class FileScore:
    """The outcome for one file: an output table, or the reason it was rejected."""

    name: str
    table: pa.Table | None = None
    reason: str | None = None
    rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _check_columns(table: pa.Table, spec: FeatureSpec) -> None:
    """The id column (it keys the output) and the spec's required features; another absent feature is a missing
    value, as in a record (mlops.contract), but a file with no feature column at all is not an account file."""
    present = set(table.column_names)
    missing = [c for c in spec.feature_columns if c not in present and c in spec.required]
    if spec.id_column and spec.id_column not in present:
        missing.append(spec.id_column)
    if missing:
        raise DataError(f"missing column(s) {missing} required by spec '{spec.name}'")
    if not any(c in present for c in spec.feature_columns):
        raise DataError(f"the file holds none of the spec's features ({spec.name}): is it an account file?")


REASONS = "reasons"  # list<struct<feature, value (as text), contribution>>: the top k, by |contribution|
REASON_TYPE = pa.list_(pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())]))


def _output_table(
    spec: FeatureSpec,
    clean_frame: pd.DataFrame,
    probabilities: np.ndarray,
    aggregates: Sequence[Aggregate],
    explanations: Sequence[dict[str, Any]] | None = None,
) -> pa.Table:
    columns: dict[str, Any] = {}
    if spec.id_column:
        columns[spec.id_column] = pa.array(clean_frame[spec.id_column].astype("string"), type=pa.string())
    columns[PROBABILITY] = pa.array(probabilities, type=pa.float64())
    for aggregate in aggregates:
        value = float(getattr(clean_frame[aggregate.column], aggregate.function)())
        columns[aggregate.output_column] = pa.array(np.full(len(clean_frame), value), type=pa.float64())
    if explanations is not None:  # the same explanation as HTTP's (mlops.explain), as columns
        reasons = [
            [{**c, "value": None if c["value"] is None else str(c["value"])} for c in e["contributions"]]
            for e in explanations
        ]
        columns[REASONS] = pa.array(reasons, type=REASON_TYPE)
        columns[f"{REASONS}_bias"] = pa.array([e["bias"] for e in explanations], type=pa.float64())
        columns[f"{REASONS}_other"] = pa.array([e["other"] for e in explanations], type=pa.float64())
    return pa.table(columns)


def score_frames(
    bundle: ModelBundle,
    tables: Sequence[tuple[str, pa.Table]],
    aggregates: Sequence[Aggregate] = (),
    explain: int = 0,
) -> list[FileScore]:
    """Score parsed raw files: one to-pandas, clean, encode and predict for the whole block when it is all valid.

    `explain`: add each row's `explain` top reasons (columns `reasons`, `reasons_bias`, `reasons_other`)."""
    spec = bundle.spec
    results: dict[str, FileScore] = {}
    good: list[tuple[str, pa.Table]] = []
    for name, table in tables:
        try:
            _check_columns(table, spec)
            good.append((name, table))
        except DataError as error:
            results[name] = FileScore(name, reason=str(error))
    cleaned: list[tuple[str, pd.DataFrame]] = []
    if good:
        try:
            block = clean(_block_frame([t for _, t in good]), spec, require_target=False)
            bounds = np.cumsum([0] + [t.num_rows for _, t in good])
            cleaned = [(n, block.iloc[bounds[i] : bounds[i + 1]]) for i, (n, _) in enumerate(good)]
        except DataError:
            # some file of the block is bad: clean one by one, so each gets its own message
            for name, table in good:
                try:
                    cleaned.append((name, clean(table.to_pandas(), spec, require_target=False)))
                except DataError as error:
                    results[name] = FileScore(name, reason=str(error))
    if cleaned:
        whole = cleaned[0][1] if len(cleaned) == 1 else pd.concat([c for _, c in cleaned], ignore_index=True)
        matrix = bundle.encoder.encode_frame(whole)
        probabilities = bundle.predict_encoded(matrix)
        # the same reasons as the record path, values from the clean frame (one `pred_contribs` call per block)
        rows = whole[spec.feature_columns].to_dict("records") if explain else []
        reasons = explain_encoded(bundle, matrix, rows, explain) if explain else None
        start = 0
        for name, part in cleaned:
            stop = start + len(part)
            table = _output_table(
                spec,
                part.reset_index(drop=True),
                probabilities[start:stop],
                aggregates,
                reasons[start:stop] if reasons is not None else None,
            )
            results[name] = FileScore(name, table=table, rows=len(part))
            start = stop
    return [results[name] for name, _ in tables]


def _block_frame(tables: Sequence[pa.Table]) -> pd.DataFrame:
    """The files of a block as one raw frame, rows in file order. Arrow concatenates by column name and widens
    types (an int column beside a float one, an all-empty column); where it cannot (a number column holding text in
    one file), pandas concatenates the files' frames instead and `clean` names the bad value."""
    if len(tables) == 1:
        return tables[0].to_pandas()
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def table_bytes(table: pa.Table) -> bytes:
    """One output file. Snappy (Parquet's default), not zstd: on a 200-row output zstd took 350 us against 75 us, a
    tenth of a file's whole scoring, to save a few hundred bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue().to_pybytes()
