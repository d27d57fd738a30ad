"""What text the platform accepts: valid Unicode that every store can hold, decided once for every entry point.

JSON lets a client send what no store can write: a lone UTF-16 surrogate (`"\\ud800"`) parses into a Python str
that SQLite, MongoDB (BSON is UTF-8) and UTF-8 files refuse with UnicodeEncodeError, long after the request was
answered. And U+0000 cannot be a MongoDB key nor a PostgreSQL text. So every JSON body (HTTP, a Kinesis record's
Data) is parsed by `loads_text`, which refuses such text naming where it is, before anything is answered or logged.

Cost: orjson, which parses almost every body, itself refuses lone surrogates; a body it parsed needs no walk unless
it holds a `\\u0000` escape. Only the bodies the standard library parses (NaN tokens, 19-digit integers, UTF-16,
surrogates) are walked, iteratively (a deeply nested body cannot raise RecursionError here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlops import json_text

UNSTORABLE = "[\x00\ud800-\udfff]"  # a regex: what text_problem refuses, for pandas' vectorized str methods
NUL = "contains the NUL character (U+0000), which the stores cannot hold"


@dataclass(eq=False)
class TextError(ValueError):
    """Text no store can hold. `path` locates it in the JSON value (keys and list positions, outermost first)."""

    path: tuple[str | int, ...]
    reason: str

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        return f"field '{self.field}': {self.reason}"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None. The reason names the position, never echoes the bad character."""
    if "\x00" in text:
        return f"{NUL} at character {text.index(chr(0))}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        return f"is not valid Unicode text: a lone surrogate U+{code:04X} at character {error.start}"
    return None


def check_text(text: str, path: Sequence[str | int]) -> str:
    """`text` if it can be stored; else TextError at `path`."""
    problem = text_problem(text)
    if problem is not None:
        raise TextError(tuple(path), problem)
    return text


def find_bad_text(value: Any) -> TextError | None:
    """The first string (or key) in a parsed JSON value that no store can hold, or None. Iterative: any depth."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return TextError(path, problem)
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    return TextError((*path, "(name)"), f"a field name {problem}")
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
    return None


def loads_text(raw: bytes) -> Any:
    """The JSON value of `raw`, its text checked. Raises what `json_text.loads` raises (ValueError, RecursionError)
    for what is not JSON, and TextError for JSON whose text no store can hold."""
    value, fast = json_text.loads_parsed_by(raw)
    if not fast or b"\\u0000" in raw:
        problem = find_bad_text(value)
        if problem is not None:
            raise problem
    return value


def format_path(path: Sequence[str | int]) -> str:
    """`("inputs", 0, "data")` -> `inputs[0].data`; the empty path is the whole body."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"
