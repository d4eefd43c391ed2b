"""Payloads that are not naturally tables, sent as tables: the column conventions and their checks.

The REST protocol stays MLflow's (`dataframe_split` / `dataframe_records`, components/serve.py) and the
model stays a pyfunc: a request is a table with ONE ROW PER ITEM (a text, a sequence, a file, a
generation request) and typed columns. A project declares its columns as a list of `Column`s; that
list is the documented payload, `input_schema(columns)` is the MLflow signature it implies, and
`signature_problems(columns, schema)` says where a logged signature disagrees with it (a test of the
project asserts it returns nothing). The pyfunc calls `check_columns(frame, columns)` (or one checker)
before touching the data: every refusal is a `PayloadError`, a ValueError whose message names the
column, the row (0-based, as in the request) and the reason; the server answers it with 422.

| payload kind   | column type in the signature | checks (`Column(kind=...)` options)                       | example cell               |
|----------------|------------------------------|------------------------------------------------------------|----------------------------|
| text           | string                       | a str, not blank, at most `max_chars` characters          | "Transformers for ..."     |
| sequence       | string                       | letters of `alphabet` only (case-folded), length in        | "MKTAYIAKQR"               |
|                |                              | [`min_length`, `max_length`]                              |                            |
| file (base64)  | string                       | valid standard base64 (no whitespace, no data: prefix),   | "iVBORw0KGgo..." (a PNG)   |
|                |                              | decoded size <= `max_bytes` (checked BEFORE decoding),    |                            |
|                |                              | optional magic bytes `kinds`: png, jpeg, gzip, mmcif      |                            |
| label          | string                       | one of `labels` (case-insensitive; the canonical spelling | "PA"                       |
|                |                              | is returned)                                              |                            |
| integer        | long                         | a whole number (not bool) in [`low`, `high`]              | 42                         |
| number         | double                       | a finite number, optionally in [`low`, `high`]            | 58.0                       |
| generation     | label + long + long          | `generation_columns(labels, max_count)`: `label` from the | {"label": "cat",           |
| request        |                              | list, integer `seed` in [0, 2**32 - 1], `count` 1..N      |  "seed": 7, "count": 4}    |

A column with `required=False` may be absent or null in a row (the checker returns None there); a
required one may not. Checkers return the parsed values, one per row (str, bytes, int, float).
Large cells (a base64 image) are logged by the server as capped summaries (components/inference_log.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues
NUCLEOTIDES = "ACGT"
SEED_RANGE = (0, 2**32 - 1)  # numpy's and torch's seedable range
MAGIC = {  # file kind -> what its first bytes must be
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gzip": (b"\x1f\x8b",),
}
TEXT_KINDS = ("mmcif",)  # checked on the text: the first line that is not blank or a # comment starts with data_


class PayloadError(ValueError):
    """A request cell (or column) the model refuses: `column`, `row` (0-based) and `reason` say what to fix."""

    def __init__(self, reason: str, column: str | None = None, row: int | None = None):
        self.reason, self.column, self.row = reason, column, row
        where = [f"column {column!r}" if column is not None else "", f"row {row}" if row is not None else ""]
        where = ", ".join(w for w in where if w)
        super().__init__(f"{where}: {reason}" if where else reason)


def is_missing(value: Any) -> bool:
    """None, NaN, NaT, pandas.NA."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if type(value).__name__ in ("NaTType", "NAType"):
        return True
    try:
        return bool(value != value)  # numpy NaN scalars
    except (TypeError, ValueError):
        return False


def _values(values) -> list:
    return list(values.tolist() if hasattr(values, "tolist") else values)


def _each(values, column: str, required: bool) -> Iterable[tuple[int, Any]]:
    """(row, value) of the present values; a missing required value is a PayloadError."""
    for row, value in enumerate(_values(values)):
        if is_missing(value):
            if required:
                raise PayloadError("a value is required (got null)", column, row)
            continue
        yield row, value


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the checkers: values of one column -> parsed values, or PayloadError ---------------------------


def check_text(values, column: str, *, max_chars: int, required: bool = True, allow_blank: bool = False) -> list:
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        if not isinstance(value, str):
            raise PayloadError(f"expected text, got {type(value).__name__} {_describe(value)}", column, row)
        if not allow_blank and not value.strip():
            raise PayloadError("the text is empty", column, row)
        if len(value) > max_chars:
            raise PayloadError(f"the text has {len(value)} characters; at most {max_chars} are accepted", column, row)
        out[row] = value
    return out


def check_sequence(
    values,
    column: str,
    *,
    alphabet: str = AMINO_ACIDS,
    max_length: int,
    min_length: int = 1,
    required: bool = True,
) -> list:
    allowed = set(alphabet.upper())
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        if not isinstance(value, str):
            raise PayloadError(
                f"expected a sequence string, got {type(value).__name__} {_describe(value)}", column, row
            )
        sequence = value.strip().upper()
        if not min_length <= len(sequence) <= max_length:
            raise PayloadError(
                f"the sequence has {len(sequence)} letters; the model takes {min_length} to {max_length}", column, row
            )
        bad = next((i for i, letter in enumerate(sequence) if letter not in allowed), None)
        if bad is not None:
            raise PayloadError(
                f"position {bad}: {sequence[bad]!r} is not one of the alphabet {''.join(sorted(allowed))}", column, row
            )
        out[row] = sequence
    return out


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def check_file(
    values,
    column: str,
    *,
    max_bytes: int,
    kinds: Sequence[str] = (),
    required: bool = True,
) -> list:
    """Base64 strings -> bytes; the decoded size is bounded from the string's length before decoding."""
    unknown = sorted(set(kinds) - set(MAGIC) - set(TEXT_KINDS))
    if unknown:
        raise ValueError(f"unknown file kind(s) {unknown}; known: {sorted({*MAGIC, *TEXT_KINDS})}")
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        if not isinstance(value, str):
            raise PayloadError(f"expected a base64 string, got {type(value).__name__} {_describe(value)}", column, row)
        if not value:
            raise PayloadError("the file is empty", column, row)
        size = len(value) // 4 * 3 - (len(value) - len(value.rstrip("=")))
        if size > max_bytes:
            raise PayloadError(
                f"the file is about {size} bytes once decoded; at most {max_bytes} are accepted", column, row
            )
        if len(value) % 4 or not _BASE64.fullmatch(value):
            first = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
            detail = f"character {first!r} is not base64" if first else "its length is not a multiple of 4"
            raise PayloadError(f"not valid base64 ({detail}; send standard base64 without line breaks)", column, row)
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise PayloadError(f"not valid base64 ({err})", column, row) from None
        if kinds and not any(file_kind_matches(data, kind) for kind in kinds):
            raise PayloadError(
                f"the file is not {' or '.join(k.upper() for k in kinds)} (by its first bytes)", column, row
            )
        out[row] = data
    return out


def file_kind_matches(data: bytes, kind: str) -> bool:
    if kind in MAGIC:
        return any(data.startswith(magic) for magic in MAGIC[kind])
    if kind == "mmcif":
        head = data[:4096].decode("utf-8", "replace")
        for line in head.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return line.startswith("data_")
        return False
    raise ValueError(f"unknown file kind {kind!r}")


def check_label(values, column: str, *, labels: Sequence[str], required: bool = True) -> list:
    canonical = {str(label).strip().upper(): label for label in labels}
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        label = canonical.get(str(value).strip().upper()) if isinstance(value, str) else None
        if label is None:
            raise PayloadError(f"{_describe(value)} is not one of {list(labels)}", column, row)
        out[row] = label
    return out


def check_integer(values, column: str, *, low: int, high: int, required: bool = True) -> list:
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        whole = (
            isinstance(value, numbers.Integral)
            or (isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer())
        ) and not isinstance(value, bool)
        if not whole:
            raise PayloadError(f"expected a whole number, got {type(value).__name__} {_describe(value)}", column, row)
        number = int(value)
        if not low <= number <= high:
            raise PayloadError(f"{number} is outside [{low}, {high}]", column, row)
        out[row] = number
    return out


def check_number(
    values, column: str, *, low: float | None = None, high: float | None = None, required: bool = True
) -> list:
    out: list = [None] * len(_values(values))
    for row, value in _each(values, column, required):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise PayloadError(f"expected a number, got {type(value).__name__} {_describe(value)}", column, row)
        number = float(value)
        if not math.isfinite(number):
            raise PayloadError(f"{number} is not a finite number", column, row)
        if (low is not None and number < low) or (high is not None and number > high):
            raise PayloadError(f"{number:g} is outside [{low}, {high}]", column, row)
        out[row] = number
    return out


CHECKERS: dict[str, Callable[..., list]] = {
    "text": check_text,
    "sequence": check_sequence,
    "file": check_file,
    "label": check_label,
    "integer": check_integer,
    "number": check_number,
}
SIGNATURE_TYPES = {  # payload kind -> MLflow column type
    "text": "string",
    "sequence": "string",
    "file": "string",
    "label": "string",
    "integer": "long",
    "number": "double",
}


# ---- a project's payload: its columns --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a request: its payload kind (CHECKERS), whether it is required, the checker's options."""

    name: str
    kind: str
    required: bool = True
    options: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHECKERS:
            raise ValueError(f"column {self.name!r}: kind {self.kind!r} is not one of {sorted(CHECKERS)}")

    @property
    def mlflow_type(self) -> str:
        # an optional whole number is a double in the signature: a JSON null makes pandas store the column as
        # float, which MLflow refuses to cast back to long; check_integer still accepts only whole values
        if self.kind == "integer" and not self.required:
            return "double"
        return SIGNATURE_TYPES[self.kind]

    def check(self, frame) -> list:
        if self.name not in frame.columns:
            if self.required:
                raise PayloadError("the column is missing from the request", self.name)
            return [None] * len(frame)
        return CHECKERS[self.kind](frame[self.name], self.name, required=self.required, **self.options)


def check_columns(frame, columns: Sequence[Column]) -> dict[str, list]:
    """Every declared column of `frame` checked and parsed: {name: values}; the first problem raises."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise PayloadError(f"expected a table with columns {[c.name for c in columns]}, got {type(frame).__name__}")
    if len(frame) == 0:
        raise PayloadError("the request has no rows")
    return {column.name: column.check(frame) for column in columns}


def generation_columns(labels: Sequence[str], max_count: int, max_seed: int = SEED_RANGE[1]) -> list[Column]:
    """A generation request: which class, which seed (reproducible samples), how many samples."""
    return [
        Column("label", "label", options={"labels": list(labels)}, description="the class to generate"),
        Column("seed", "integer", options={"low": SEED_RANGE[0], "high": max_seed}, description="random seed"),
        Column("count", "integer", options={"low": 1, "high": max_count}, description="samples to generate"),
    ]


def check_generation(frame, labels: Sequence[str], max_count: int) -> list[dict]:
    """One {label, seed, count} per row, or PayloadError."""
    parsed = check_columns(frame, generation_columns(labels, max_count))
    return [dict(zip(parsed, row)) for row in zip(*parsed.values())]


def input_schema(columns: Sequence[Column]):
    """The MLflow input schema the columns imply (what the registered signature should say)."""
    from mlflow.types import ColSpec, Schema

    return Schema([ColSpec(c.mlflow_type, c.name, required=c.required) for c in columns])


def signature_problems(columns: Sequence[Column], schema) -> list[str]:
    """Where an MLflow input schema (e.g. one inferred from the input example) disagrees with the columns."""
    if schema is None or not schema.has_input_names():
        return ["the signature has no named input columns"]
    logged = {spec.name: spec for spec in schema.inputs}
    problems = []
    for column in columns:
        spec = logged.get(column.name)
        if spec is None:
            problems.append(f"{column.name}: declared, not in the signature")
            continue
        kind = getattr(spec.type, "name", str(spec.type))
        if kind != column.mlflow_type:
            problems.append(f"{column.name}: the signature says {kind}, the payload says {column.mlflow_type}")
        if column.required and not spec.required:
            problems.append(f"{column.name}: required by the payload, optional in the signature")
    problems += [f"{name}: in the signature, not declared" for name in logged if name not in {c.name for c in columns}]
    return problems


def first_non_finite(frame, allow_missing: bool = True) -> tuple[str, int, Any] | None:
    """(column, row, value) of the first infinite number in a float column (NaN too unless allow_missing)."""
    import numpy as np
    import pandas as pd

    for column in frame.columns:
        series = frame[column]
        if not pd.api.types.is_float_dtype(series):
            continue
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(values) if allow_missing else ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            return str(column), row, values[row]
    return None
