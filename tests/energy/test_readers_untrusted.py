"""Energy reader and checks against files that used to pass validation and fail later.

- a NUL byte past the first 64 KB of a CSV (only the head used to be scanned);
- a series too short for its split (one row passed validation, then `prepare` died with a
  scikit-learn message): validate now asks for the rows the split needs, and `prepare` refuses
  with energy.data.split's name before any scaler is fitted.

Broken variants of the real ETTh1 (../shared) are written into pytest's tmp_path.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.validate import ValidationFailed, run_checks
from pipelines.energy.checks import energy_checks
from pipelines.energy.data import prepare, split_borders
from pipelines.energy.schema import ETT_15MIN, ETT_HOURLY, MIN_ROWS, OPSD_DAILY, rows_needed
from pipelines.energy.sources import read_series


@pytest.fixture(scope="module")
def lines(etth1) -> list[str]:
    if not etth1.is_file():
        pytest.fail(f"sample data not found at {etth1}")
    return etth1.read_text().splitlines(keepends=True)


def _write(tmp_path: Path, lines: list[str], name: str = "ETTh1.csv") -> Path:
    path = tmp_path / name
    path.write_text("".join(lines))
    return path


# ---- NUL bytes anywhere -------------------------------------------------------------------------


@pytest.mark.parametrize("line_no", [1000, 17421])  # ~150 KB in; the last line of ETTh1
def test_nul_byte_past_the_first_64_kb_is_refused_with_its_line(tmp_path, lines, line_no):
    broken = list(lines)
    i = line_no - 1
    broken[i] = broken[i][:25] + "\x00" + broken[i][25:]
    path = _write(tmp_path, broken)
    assert sum(len(s) for s in broken[:i]) > 65536
    with pytest.raises(ValidationFailed) as err:
        energy_checks(path, ETT_HOURLY)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot be read: binary file (a NUL byte at line {line_no}, byte ")
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert err.value.result.failures[0].expectation == "file_is_readable"


# ---- too few rows for the split -----------------------------------------------------------------


def test_one_row_series_fails_validation_not_prepare(tmp_path, lines):
    path = _write(tmp_path, lines[:2])
    result = run_checks(energy_checks(path, ETT_HOURLY))
    assert not result.success
    [failure] = result.failures
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert f"{path}: 1 data rows, expected at least {MIN_ROWS}; too few rows to split by time" in result.error_message()


def test_fraction_split_needs_min_rows(tmp_path, lines):
    split = [0.7, 0.1, 0.2]
    short = _write(tmp_path, lines[:MIN_ROWS], "short.csv")  # header + MIN_ROWS - 1 rows
    result = run_checks(energy_checks(short, ETT_HOURLY, split=split))
    assert [f.expectation for f in result.failures] == ["expect_table_row_count_to_be_between"]
    assert f"{MIN_ROWS - 1} data rows, expected at least {MIN_ROWS}; too few rows for energy.data.split" in (
        result.error_message()
    )
    enough = _write(tmp_path, lines[: MIN_ROWS + 1], "enough.csv")
    assert run_checks(energy_checks(enough, ETT_HOURLY, split=split)).success


def test_ett_split_needs_its_known_length(tmp_path, lines):
    assert rows_needed("ett", ETT_HOURLY.freq_seconds) == 14400
    assert rows_needed("ett", ETT_15MIN.freq_seconds) == 57600
    path = _write(tmp_path, lines[:5001])  # 5,000 hourly rows: fine for fractions, short of the ETT borders
    result = run_checks(energy_checks(path, ETT_HOURLY, split="ett"))
    assert not result.success
    assert "5000 data rows, expected at least 14400; too few rows for energy.data.split 'ett'" in (
        result.error_message()
    )
    assert run_checks(energy_checks(path, ETT_HOURLY, split=[0.7, 0.1, 0.2])).success


def test_ett_split_on_daily_data_is_a_config_error():
    with pytest.raises(ValueError, match="the ETT split is defined for hourly and 15-minute ETT data, not a 86400 s"):
        rows_needed("ett", OPSD_DAILY.freq_seconds)
    with pytest.raises(ValueError, match="energy.data.split: 'sideways' is neither 'ett' nor"):
        rows_needed("sideways", 3600)


@pytest.mark.parametrize(
    ("n_rows", "split", "why"),
    [
        (1, [0.7, 0.1, 0.2], f"the series has 1 rows; a split by time fractions needs at least {MIN_ROWS}"),
        (MIN_ROWS, [0.998, 0.001, 0.001], "every split needs rows"),
        (5000, "ett", "the ETT split needs 14400 rows, the file has 5000"),
    ],
)
def test_prepare_refuses_a_short_series_without_scikit_learn(tmp_path, n_rows, split, why):
    stamps = pd.date_range("2016-07-01", periods=n_rows, freq="h")
    values = np.ones((n_rows, 7), dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape(why)) as err:
        prepare(stamps, values, ETT_HOURLY.value_columns, split, 3600, tmp_path)
    assert "sklearn" not in str(err.value) and "n_samples" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_real_etth1_still_splits(etth1, lines):
    stamps, values = read_series(etth1, ETT_HOURLY)
    assert split_borders(len(values), "ett", 3600) == (8640, 11520, 14400)
    assert split_borders(MIN_ROWS, [0.7, 0.1, 0.2], 3600) == (210, 240, 300)


# ---- an unset mirror ------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "key"), [("ett", "ett_mirror"), ("opsd", "opsd_url")])
def test_unset_mirror_names_the_key(tmp_path, monkeypatch, source, key):
    from pipelines.energy.config import DataSection
    from pipelines.energy.sources import pull

    monkeypatch.chdir(tmp_path)
    data = DataSection(source=source, **{key: ""})
    with pytest.raises(ValueError, match=rf"energy.data.{key} is empty: set energy.data.{key}"):
        pull(data, 0, tmp_path)
    assert list(tmp_path.iterdir()) == []
