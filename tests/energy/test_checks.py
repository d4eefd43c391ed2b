"""pipelines.energy.checks on the real energy samples and on broken copies of ETTh1.

The samples live in ../shared beside the repository and are never copied into it; each broken
variant is written into pytest's tmp_path from the real file.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from components.validate import ValidationFailed, run_checks, write_report
from pipelines.energy.checks import energy_checks
from pipelines.energy.schema import ETT_15MIN, ETT_HOURLY, MIN_ROWS, OPSD_DAILY, CsvSchema, ett_schema

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "energy"
ETTH1 = DATA / "ETTh1.csv"
ETTM1 = DATA / "ETTm1.csv"
OPSD = DATA / "opsd_germany_daily.csv"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"sample data not found at {path}")
    return path


@pytest.fixture(scope="module")
def etth1_lines() -> list[str]:
    """The real ETTh1.csv as lines (with their newlines); lines[0] is file line 1 (the header)."""
    return _need(ETTH1).read_text(encoding="utf-8").splitlines(keepends=True)


def _validate(path: Path, schema: CsvSchema):
    return run_checks(energy_checks(path, schema))


def _write(tmp_path: Path, lines: list[str], name: str = "ETTh1.csv") -> Path:
    path = tmp_path / name
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _paragraphs_naming(message: str, column: str) -> list[str]:
    return [p for p in message.split("\n\n") if f"column {column!r}" in p]


# --------------------------------------------------------------------------- schemas


def test_ett_schema_by_name():
    assert ett_schema("ETTh1") is ETT_HOURLY and ett_schema("ETTh2") is ETT_HOURLY
    assert ett_schema("ETTm1") is ETT_15MIN and ett_schema("ETTm2.csv") is ETT_15MIN
    assert ETT_HOURLY.freq_seconds == 3600 and ETT_15MIN.freq_seconds == 900
    assert ETT_HOURLY.all_columns == ("date", *"HUFL HULL MUFL MULL LUFL LULL OT".split())
    assert OPSD_DAILY.all_columns[-1] == "Wind+Solar"
    assert OPSD_DAILY.extra_columns == ("Wind+Solar",)
    with pytest.raises(ValueError, match="ETTx9"):
        ett_schema("ETTx9")


def test_schema_rejects_inconsistent_declarations():
    with pytest.raises(ValueError, match="not value columns"):
        CsvSchema("t", ("a",), "%Y", 1, {"b": (0.0, 1.0)})
    with pytest.raises(ValueError, match="lacks"):
        CsvSchema("t", ("a",), "%Y", 1, {}, all_columns=("t",))


# --------------------------------------------------------------------------- real files pass


@pytest.mark.parametrize("path, schema", [(ETTH1, ETT_HOURLY), (ETTM1, ETT_15MIN)])
def test_real_ett_files_pass(path, schema):
    result = _validate(_need(path), schema)
    assert result.success, result.error_message()
    assert result.checks == [f"{path.name} cells", f"{path.name} series"]
    assert result.n_expectations > 20


def test_real_ett_values_lie_well_inside_the_ranges():
    """The bounds are physical plausibility limits, far from the data (a wide margin)."""
    import pandas as pd

    frame = pd.read_csv(_need(ETTH1))
    for col, (lo, hi) in ETT_HOURLY.ranges.items():
        assert lo / 2 < frame[col].min() and frame[col].max() < hi / 2, col


def test_validating_real_etth1_is_fast():
    energy_checks(_need(ETTH1), ETT_HOURLY)  # warm up: GX's import alone takes seconds
    start = time.perf_counter()
    result = _validate(ETTH1, ETT_HOURLY)
    elapsed = time.perf_counter() - start
    assert result.success
    assert elapsed < 10, f"validating ETTh1 took {elapsed:.1f} s"


def test_opsd_complete_rows_pass(tmp_path):
    """OPSD's Wind/Solar start empty (Wind until 2009, Solar until 2011). Even from 2012 on a
    few days are empty (DST spring-forward days: 23-hour days dropped by the daily sum's
    min_count=24, plus one Wind gap on 2014-03-12); the last empty cell is on 2014-03-30, so
    the complete contiguous tail starts on 2014-03-31."""
    lines = _need(OPSD).read_text(encoding="utf-8").splitlines(keepends=True)
    tail = [ln for ln in lines[1:] if ln[:10] >= "2014-03-31"]
    path = _write(tmp_path, [lines[0], *tail], name="opsd_germany_daily.csv")
    result = _validate(path, OPSD_DAILY)
    assert result.success, result.error_message()


def test_opsd_from_2012_fails_naming_the_dst_gaps(tmp_path):
    lines = _need(OPSD).read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [ln for ln in lines[1:] if ln[:10] >= "2012-01-01"]
    path = _write(tmp_path, [lines[0], *rows], name="opsd_2012.csv")
    result = _validate(path, OPSD_DAILY)
    assert not result.success
    # 2013-03-31 is the 456th row from 2012-01-01 (2012 is a leap year): file line 457
    line = 2 + rows.index(next(r for r in rows if r.startswith("2013-03-31")))
    assert line == 457
    solar = _paragraphs_naming(result.error_message(), "Solar")
    assert solar and all(str(path) in p for p in solar)
    assert f"{line}" in solar[0]


def test_unrestricted_opsd_fails_naming_the_empty_cells():
    result = _validate(_need(OPSD), OPSD_DAILY)
    assert not result.success
    message = result.error_message()
    for column, count in (("Wind", 1463), ("Solar", 2195)):
        paragraphs = _paragraphs_naming(message, column)
        assert paragraphs, message
        first = paragraphs[0]
        assert str(OPSD) in first and "lines 2, 3, 4, 5, 6" in first
        assert f"{count} in all" in first and "empty" in first
    empty = [f for f in result.failures if f.expectation == "expect_column_values_to_not_be_null"]
    assert {f.column for f in empty} >= {"Wind", "Solar", "Wind+Solar"}
    assert all(len(f.examples) == 5 for f in empty)


# --------------------------------------------------------------------------- broken ETTh1


def _set_cell(line: str, column_index: int, value: str) -> str:
    fields = line.rstrip("\n").split(",")
    fields[column_index] = value
    return ",".join(fields) + "\n"


OT = 7  # column index of OT in ETT files
HULL = 2


def test_empty_cell_in_ot(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines[16] = _set_cell(lines[16], OT, "")  # file line 17
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    message = result.error_message()
    assert re.search(rf"{re.escape(str(path))}: column 'OT', line 17\b.*empty", message), message
    assert all(f.column == "OT" for f in result.failures)
    assert {ex["line"] for f in result.failures for ex in f.examples} == {17}


def test_text_in_numeric_column(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines[99] = _set_cell(lines[99], HULL, "abc")  # file line 100
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    message = result.error_message()
    assert f"{path}: column 'HULL', line 100: value 'abc'" in message, message
    assert "expect_column_values_to_match_regex" in message
    (regex,) = [f for f in result.failures if f.expectation.endswith("to_match_regex")]
    assert regex.examples == [{"line": 100, "value": "abc"}] and regex.unexpected_count == 1


def test_out_of_range_value(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines[1233] = _set_cell(lines[1233], OT, "999.5")  # file line 1234
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    assert [f.expectation for f in result.failures] == ["expect_column_values_to_be_between"]
    message = result.error_message()
    assert f"{path}: column 'OT', line 1234: value 999.5" in message, message
    assert "outside the range [-50.0, 120.0]" in message


def test_duplicated_timestamp(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines.insert(17, lines[16])  # line 17 repeated as line 18
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    message = result.error_message()
    by_exp = {f.expectation: f for f in result.failures}
    assert [ex["line"] for ex in by_exp["expect_column_values_to_be_unique"].examples] == [17, 18]
    assert [ex["line"] for ex in by_exp["expect_column_values_to_be_increasing"].examples] == [18]
    gap = by_exp["expect_column_values_to_be_in_set"]
    assert gap.column == "seconds_since_previous" and gap.examples == [{"line": 18, "value": 0.0}]
    assert f"{path}: column 'date', line 17: value '2016-07-01 15:00:00'" in message, message
    assert f"{path}: column 'seconds_since_previous', line 18: value 0.0" in message


def test_missing_timestamp(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    del lines[16]  # 2016-07-01 15:00 gone: line 17 now holds 16:00
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    assert len(result.failures) == 1
    message = result.error_message()
    assert f"{path}: column 'seconds_since_previous', line 17: value 7200.0" in message, message
    assert "'date'" in message and "3600" in message


def test_missing_column(tmp_path, etth1_lines):
    lines = [
        ",".join(ln.rstrip("\n").split(",")[:-2] + [ln.rstrip("\n").split(",")[-1]]) + "\n" for ln in etth1_lines
    ]  # LULL removed from the header and every row
    path = _write(tmp_path, lines)
    result = _validate(path, ETT_HOURLY)  # no KeyError: the series check uses what is there
    assert not result.success
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert failure.expectation == "expect_table_columns_to_match_ordered_list"
    assert failure.column is None and "LULL" not in failure.observed
    message = result.error_message()
    assert f"{path}: header (line 1): missing column 'LULL'" in message, message


def test_surplus_fields_are_a_read_error(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines[0] = lines[0].replace(",LULL", "")  # header short of one name, rows intact
    path = _write(tmp_path, lines)
    with pytest.raises(ValidationFailed, match=re.escape(str(path))) as err:
        energy_checks(path, ETT_HOURLY)
    assert "more fields than the header" in str(err.value)


def test_ragged_row_names_its_line(tmp_path, etth1_lines):
    lines = list(etth1_lines)
    lines[41] = lines[41].rstrip("\n") + ",1.0\n"  # file line 42 has 9 fields
    path = _write(tmp_path, lines)
    with pytest.raises(ValidationFailed, match=re.escape(str(path))) as err:
        energy_checks(path, ETT_HOURLY)
    assert "line 42" in str(err.value)


# --------------------------------------------------------------------------- unreadable files


def test_empty_file(tmp_path):
    path = tmp_path / "ETTh1.csv"
    path.write_bytes(b"")
    with pytest.raises(ValidationFailed) as err:
        energy_checks(path, ETT_HOURLY)
    message = str(err.value)
    assert str(path) in message and "empty" in message
    assert "Traceback" not in message and not err.value.result.success


@pytest.mark.parametrize(
    "junk",
    [
        bytes(random.Random(0).getrandbits(8) for _ in range(4096)),  # random bytes
        b"\x00\x01\x02\x03" * 256,  # NUL bytes that pandas would read as one odd column
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    ],
    ids=["random", "nul", "png"],
)
def test_binary_junk(tmp_path, junk):
    path = tmp_path / "ETTh1.csv"
    path.write_bytes(junk)
    with pytest.raises(ValidationFailed) as err:
        energy_checks(path, ETT_HOURLY)
    message = str(err.value)
    assert message.startswith(f"{path}:") and ("binary" in message)
    assert len(message.splitlines()) == 1


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(ValidationFailed, match=re.escape(str(path))):
        energy_checks(path, ETT_HOURLY)


def test_header_only_file_fails(tmp_path, etth1_lines):
    path = _write(tmp_path, etth1_lines[:1])
    result = _validate(path, ETT_HOURLY)
    assert not result.success
    assert f"0 data rows, expected at least {MIN_ROWS}" in result.error_message()


def test_unreadable_file_report_is_written(tmp_path):
    path = tmp_path / "ETTh1.csv"
    path.write_bytes(b"")
    with pytest.raises(ValidationFailed) as err:
        energy_checks(path, ETT_HOURLY)
    json_path, md_path = write_report(err.value.result, tmp_path / "report")
    report = json.loads(json_path.read_text())
    assert report["success"] is False and report["failures"][0]["file"] == str(path)
    assert str(path) in md_path.read_text()
