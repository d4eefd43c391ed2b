"""Great Expectations checks of one energy CSV (ETT or OPSD), reported by line.

Two checks per file, both on frames indexed by the 1-based line number in the file
(the header is line 1, the first data row line 2):

* ``<file> cells``: the raw strings: the exact ordered column list, enough data rows for the
  split (the ETT borders' 14,400 hourly rows, x4 for 15-minute data; MIN_ROWS for fractions or an
  unknown split), no empty cell, numbers that look like numbers, timestamps in the schema's format;
* ``<file> series``: the parsed values: timestamps present, unique, strictly increasing and
  exactly ``freq_seconds`` apart (``seconds_since_previous``; the first row is exempt),
  values present and within the schema's plausible ranges.

A file that cannot be read as CSV at all (missing, empty, a NUL byte anywhere, not UTF-8, ragged)
raises :class:`components.validate.ValidationFailed` naming the file (and the line, where there is
one); the reading is `components.validate.read_csv_cells`, shared with the medical checks. Line
numbers assume one record per physical line (no quoted newlines), which holds for these files;
blank lines are kept as empty rows so numbering stays exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from components.validate import Check, read_csv_cells
from pipelines.energy.schema import MIN_ROWS, CsvSchema, rows_needed

if TYPE_CHECKING:
    import great_expectations as gx

__all__ = ["NUMBER_REGEX", "energy_checks", "read_cells"]

# A plain decimal number: optional sign, digits with an optional fraction (or a bare
# fraction), optional exponent. No "nan", "inf", thousands separators or spaces.
NUMBER_REGEX = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"

SECONDS_SINCE_PREVIOUS = "seconds_since_previous"


def read_cells(path: Path) -> pd.DataFrame:
    """Read the CSV with every cell as a string, index = line number; empty cells -> None.

    Raises ValidationFailed (naming the file) when the file is not readable CSV text.
    """
    path = Path(path)
    frame = read_csv_cells(f"{path.name} read", path)
    # An empty field (or a missing trailing field) is an empty cell: make it null so that
    # one expectation (not_be_null) reports it, and the other string checks skip it.
    return frame.mask(frame == "", None)


def energy_checks(path: Path, schema: CsvSchema, split=None) -> list[Check]:
    """The "cells" and "series" checks of one energy CSV against its schema.

    `split` is energy.data.split ("ett" or [train, val, test] fractions): the file must have the rows
    it needs (`rows_needed`). None (split unknown) asks for MIN_ROWS, the least any split accepts.
    """
    import great_expectations as gx

    path = Path(path)
    min_rows = MIN_ROWS if split is None else rows_needed(split, schema.freq_seconds)
    cells = read_cells(path)
    return [
        Check(f"{path.name} cells", path, cells, _cells_suite(path, schema, cells, gx, min_rows, split)),
        _series_check(path, schema, cells, gx),
    ]


def _cells_suite(path: Path, schema: CsvSchema, cells: pd.DataFrame, gx, min_rows: int, split) -> gx.ExpectationSuite:
    gxe = gx.expectations
    present = set(cells.columns)
    # The suite is built from a list: ExpectationSuite.add_expectation() needs an active
    # data context (it looks for a saved copy of the suite), the constructor does not.
    exps: list = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(schema.all_columns)),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=min_rows,
            max_value=None,
            description=(
                f"too few rows for energy.data.split {split!r}"
                if split is not None
                else "too few rows to split by time"
            ),
        ),
    ]
    # Column checks only for the columns that are there: a missing column is reported once,
    # by the column-list expectation above.
    for col in schema.all_columns:
        if col in present:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in schema.all_columns:
        if col in present and col != schema.time_column:
            exps.append(
                gxe.ExpectColumnValuesToMatchRegex(
                    column=col, regex=NUMBER_REGEX, description="not a plain decimal number"
                )
            )
    if schema.time_column in present:
        exps.append(
            gxe.ExpectColumnValuesToMatchStrftimeFormat(column=schema.time_column, strftime_format=schema.time_format)
        )
    return gx.ExpectationSuite(name=f"{path.name} cells", expectations=exps)


def _series_check(path: Path, schema: CsvSchema, cells: pd.DataFrame, gx) -> Check:
    gxe = gx.expectations
    series = pd.DataFrame(index=cells.index)
    exps: list = []

    time = schema.time_column
    if time in cells.columns:
        stamps = pd.to_datetime(cells[time], format=schema.time_format, errors="coerce")
        series[time] = stamps
        series[SECONDS_SINCE_PREVIOUS] = stamps.diff().dt.total_seconds()
        exps.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=time,
                description=f"no timestamp could be parsed with the format {schema.time_format!r}",
            )
        )
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=time))
        exps.append(gxe.ExpectColumnValuesToBeIncreasing(column=time, strictly=True))
        # Nulls are skipped by GX: the first row (no previous one) and rows next to an
        # unparseable timestamp (reported above) are exempt.
        exps.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=SECONDS_SINCE_PREVIOUS,
                value_set=[schema.freq_seconds],
                description=(
                    f"consecutive timestamps in {time!r} must be exactly {schema.freq_seconds} s "
                    f"apart: 0 is a duplicate, {2 * schema.freq_seconds} is a missing timestamp "
                    "just before the line named"
                ),
            )
        )

    for col in schema.value_columns:
        if col not in cells.columns:
            continue
        series[col] = pd.to_numeric(cells[col], errors="coerce")
        exps.append(
            gxe.ExpectColumnValuesToNotBeNull(column=col, description="no number could be parsed from the cell")
        )
        if col in schema.ranges:
            lo, hi = schema.ranges[col]
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
    suite = gx.ExpectationSuite(name=f"{path.name} series", expectations=exps)
    return Check(f"{path.name} series", path, series, suite)
