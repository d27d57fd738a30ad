"""parse_block: files parsed as one buffer give exactly what each parsed on its own gives (tables, errors, order)."""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch import scoring
from batch.scoring import column_types, parse_block, parse_file
from mlops.data import DataError, generate_bank_churners
from mlops.settings import PROJECT_ROOT
from mlops.spec import FeatureSpec

SPEC = FeatureSpec.load(PROJECT_ROOT / "features.yaml")
TYPES = column_types(SPEC)
RAW = generate_bank_churners(60, seed=4)


def csv_bytes(start: int, rows: int, quoting: int = csv.QUOTE_NONNUMERIC, crlf: bool = False) -> bytes:
    text = RAW.iloc[start : start + rows].to_csv(index=False, quoting=quoting, lineterminator="\r\n" if crlf else "\n")
    return text.encode()


def alone(name: str, data: bytes) -> pa.Table | DataError:
    try:
        return parse_file(name, data, TYPES)
    except DataError as error:
        return error


def assert_same(files: list[tuple[str, bytes]]) -> None:
    together = parse_block(files, TYPES)
    assert [name for name, _ in together] == [name for name, _ in files]
    for (name, got), (_, data) in zip(together, files, strict=True):
        expected = alone(name, data)
        if isinstance(expected, DataError):
            assert isinstance(got, DataError), name
            assert str(got) == str(expected)
        else:
            assert isinstance(got, pa.Table), f"{name}: {got}"
            assert got.schema.equals(expected.schema), name
            assert got.to_pylist() == expected.to_pylist(), name


def with_quoted_newline() -> bytes:
    frame = RAW.iloc[10:14].copy()
    frame.loc[frame.index[1], "Education_Level"] = "Graduate\nsecond line"
    return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode()


def with_text_in_a_number() -> bytes:
    frame = RAW.iloc[20:25].astype(object)
    frame.loc[frame.index[2], "Customer_Age"] = "forty"
    return frame.to_csv(index=False).encode()


VARIANTS: dict[str, bytes] = {
    "quoted.csv": csv_bytes(0, 5),
    "plain.csv": csv_bytes(5, 4, quoting=csv.QUOTE_MINIMAL),
    "crlf.csv": csv_bytes(30, 3, crlf=True),
    "no-final-newline.csv": csv_bytes(33, 3).rstrip(b"\n"),
    "empty-lines.csv": csv_bytes(36, 3).replace(b"\n", b"\n\n", 2),
    "quoted-newline.csv": with_quoted_newline(),
    "text-in-number.csv": with_text_in_a_number(),
    "header-only.csv": csv_bytes(0, 0),
    "empty.csv": b"",
    "other-order.csv": RAW.iloc[40:43][list(reversed(RAW.columns))].to_csv(index=False).encode(),
    "bom.csv": b"\xef\xbb\xbf" + csv_bytes(43, 2),
    "escaped-quote.csv": csv_bytes(45, 3).replace(b'"Graduate"', b'"Grad ""uate"""'),
}


def test_a_block_of_same_header_files_is_parsed_once_and_split_back(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = scoring._typed_read
    monkeypatch.setattr(scoring, "_typed_read", lambda data, types: reads.append(len(data)) or real(data, types))
    files = [(f"f{i}.csv", csv_bytes(i * 5, 5)) for i in range(6)]
    together = parse_block(files, TYPES)
    assert len(reads) == 1  # one read of the six files
    monkeypatch.undo()
    assert [t.num_rows for _, t in together] == [5] * 6
    assert_same(files)


@pytest.mark.parametrize("odd", [name for name in VARIANTS if name != "quoted.csv"])
def test_an_odd_file_among_good_ones_gets_what_it_gets_alone(odd: str) -> None:
    files = [("a.csv", csv_bytes(0, 5)), (odd, VARIANTS[odd]), ("b.csv", csv_bytes(50, 5))]
    assert_same(files)


def test_bad_files_keep_their_own_messages() -> None:
    together = dict(
        parse_block([("ok.csv", csv_bytes(0, 3)), *[(n, VARIANTS[n]) for n in ("header-only.csv", "empty.csv")]], TYPES)
    )
    assert isinstance(together["ok.csv"], pa.Table)
    assert "has a header but no rows" in str(together["header-only.csv"])
    assert "is empty" in str(together["empty.csv"])


def test_a_quoted_newline_stays_inside_its_value() -> None:
    (_, table), _ = parse_block([("q.csv", with_quoted_newline()), ("a.csv", csv_bytes(0, 2))], TYPES)
    assert table.num_rows == 4
    assert "Graduate\nsecond line" in table.column("education_level").to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(VARIANTS)), min_size=1, max_size=8))
def test_any_mixture_parses_as_each_file_alone(names: list[str]) -> None:
    files = [(f"{i}-{name}", VARIANTS[name]) for i, name in enumerate(names)]
    assert_same(files)


def test_without_types_every_file_is_read_on_its_own() -> None:
    files = [("a.csv", csv_bytes(0, 3)), ("b.csv", csv_bytes(3, 3))]
    together = parse_block(files, None)
    for (name, data), (_, table) in zip(files, together, strict=True):
        assert table.to_pylist() == parse_file(name, data).to_pylist()
