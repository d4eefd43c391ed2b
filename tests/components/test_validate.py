"""components.validate on tiny hand-made frames and suites (GX 1.x, ephemeral context)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from components.validate import (
    Check,
    Failure,
    ValidationFailed,
    ValidationResult,
    read_csv_cells,
    read_failure,
    require_text,
    run_checks,
    write_report,
)

gx = pytest.importorskip("great_expectations")
gxe = gx.expectations

FILE = Path("data/tiny.csv")


def frame() -> pd.DataFrame:
    """Rows as read from a file: index = line number (header on line 1)."""
    return pd.DataFrame(
        {
            "t": ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"],
            "x": ["1.5", "abc", "3", "", "x7"],
            "y": [1.0, 2.0, 50.0, None, 5.0],
        },
        index=pd.RangeIndex(2, 7, name="line"),
    )


def suite(*expectations) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name="tiny", expectations=list(expectations))


def test_success():
    checks = [
        Check(
            "tiny cells",
            FILE,
            frame(),
            suite(
                gxe.ExpectTableColumnsToMatchOrderedList(column_list=["t", "x", "y"]),
                gxe.ExpectColumnValuesToNotBeNull(column="t"),
                gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0, max_value=100),
            ),
        )
    ]
    result = run_checks(checks)
    assert result.success and result.failures == []
    assert result.n_expectations == 3 and result.checks == ["tiny cells"]
    assert result.check_summaries == [
        {"name": "tiny cells", "file": str(FILE), "rows": 5, "expectations": 3, "failed": 0}
    ]
    assert "PASSED" in result.summary_markdown()


def test_failure_examples_carry_lines_and_values():
    checks = [
        Check(
            "tiny cells",
            FILE,
            frame(),
            suite(
                gxe.ExpectColumnValuesToMatchRegex(column="x", regex=r"^\d+(?:\.\d+)?$"),
                gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0, max_value=10),
                gxe.ExpectColumnValuesToNotBeNull(column="y"),
                gxe.ExpectColumnValuesToNotBeNull(column="t"),  # passes
            ),
        )
    ]
    result = run_checks(checks)
    assert not result.success and result.n_expectations == 4
    regex, between, null = result.failures  # in the suite's order
    assert regex.expectation == "expect_column_values_to_match_regex" and regex.column == "x"
    assert regex.file == str(FILE) and regex.check == "tiny cells"
    assert regex.kwargs == {"column": "x", "regex": r"^\d+(?:\.\d+)?$"}  # no GX batch_id
    assert regex.unexpected_count == 3
    assert regex.examples == [
        {"line": 3, "value": "abc"},
        {"line": 5, "value": ""},
        {"line": 6, "value": "x7"},
    ]
    assert between.examples == [{"line": 4, "value": 50.0}]
    assert null.examples == [{"line": 5, "value": None}]

    message = result.error_message()
    paragraphs = message.split("\n\n")
    assert len(paragraphs) == 3
    assert paragraphs[0].startswith(f"{FILE}: column 'x', line 3: value 'abc'; line 5: value ''")
    assert "(expect_column_values_to_match_regex" in paragraphs[0]
    assert paragraphs[1].startswith(f"{FILE}: column 'y', line 4: value 50.0")
    assert "outside the range [0" in paragraphs[1]
    assert paragraphs[2].startswith(f"{FILE}: column 'y', line 5: empty")

    err = ValidationFailed(result)
    assert isinstance(err, RuntimeError) and str(err) == message and err.result is result


def test_examples_are_capped_at_five():
    big = pd.DataFrame({"v": ["bad"] * 12}, index=range(2, 14))
    regex = gxe.ExpectColumnValuesToMatchRegex(column="v", regex="^ok$")
    result = run_checks([Check("big", FILE, big, suite(regex))])
    (failure,) = result.failures
    assert failure.unexpected_count == 12
    assert [ex["line"] for ex in failure.examples] == [2, 3, 4, 5, 6]
    assert "(+7 more, 12 in all)" in result.error_message()


def test_table_level_failure():
    checks = [
        Check(
            "tiny cells",
            FILE,
            frame(),
            suite(
                gxe.ExpectTableColumnsToMatchOrderedList(column_list=["t", "x", "z"]),
                gxe.ExpectTableRowCountToBeBetween(min_value=10),
            ),
        )
    ]
    result = run_checks(checks)
    columns, rows = result.failures
    assert columns.column is None and columns.unexpected_count is None and columns.examples == []
    assert columns.kwargs == {"column_list": ["t", "x", "z"]}
    assert columns.observed == ["t", "x", "y"]
    assert rows.observed == 5 and rows.kwargs["min_value"] == 10
    message = result.error_message()
    assert f"{FILE}: header (line 1): missing column 'z'; unexpected column 'y'" in message
    assert "5 data rows, expected at least 10" in message


def test_expectation_on_missing_column_is_reported_not_raised():
    result = run_checks([Check("tiny", FILE, frame(), suite(gxe.ExpectColumnValuesToNotBeNull(column="nope")))])
    (failure,) = result.failures
    assert failure.column == "nope" and failure.error
    assert f"{FILE}: column 'nope': could not be checked" in result.error_message()


def test_several_checks_in_one_run():
    ok = Check("a", Path("a.csv"), frame(), suite(gxe.ExpectColumnValuesToNotBeNull(column="t")))
    bad = Check("b", Path("b.csv"), frame(), suite(gxe.ExpectColumnValuesToNotBeNull(column="y")))
    result = run_checks([ok, bad])
    assert result.checks == ["a", "b"] and result.n_expectations == 2
    assert [(f.check, f.file) for f in result.failures] == [("b", "b.csv")]
    assert [s["failed"] for s in result.check_summaries] == [0, 1]


def test_write_report(tmp_path):
    result = run_checks(
        [
            Check(
                "tiny cells",
                FILE,
                frame(),
                suite(
                    gxe.ExpectColumnValuesToMatchRegex(column="x", regex=r"^\d+$"),
                    gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0, max_value=10),
                    gxe.ExpectTableColumnsToMatchOrderedList(column_list=["t", "x"]),
                ),
            )
        ]
    )
    out = tmp_path / "reports" / "validate"  # created as needed
    json_path, md_path = write_report(result, out)
    assert (json_path, md_path) == (out / "validation.json", out / "validation.md")
    assert sorted(p.name for p in out.iterdir()) == ["validation.json", "validation.md"]

    data = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["success"] is False and data["n_expectations"] == 3 and data["n_failures"] == 3
    assert data["failures"][0]["examples"][0] == {"line": 2, "value": "1.5"}
    assert data["failures"][2]["observed"] == ["t", "x", "y"]

    md = md_path.read_text()
    assert md.startswith("# Data validation") and "**FAILED**" in md
    assert "| tiny cells | data/tiny.csv | 5 | 3 | 3 | FAIL |" in md
    assert "`expect_column_values_to_be_between`" in md and "| 4 | 50.0 |" in md
    assert "- column: `x`" in md and "- column: (table)" in md

    write_report(result, out)  # overwriting is fine and still leaves no temp files
    assert sorted(p.name for p in out.iterdir()) == ["validation.json", "validation.md"]


def test_read_failure_is_a_validation_failure(tmp_path):
    err = read_failure("x.csv read", Path("x.csv"), "the file is empty")
    assert isinstance(err, ValidationFailed) and not err.result.success
    assert str(err) == ("x.csv: cannot be read: the file is empty (file_is_readable, check 'x.csv read')")
    json_path, _ = write_report(err.result, tmp_path)
    assert json.loads(json_path.read_text())["failures"][0]["error"] == "the file is empty"


def test_result_round_trips_through_json():
    result = ValidationResult(
        success=False,
        n_expectations=1,
        failures=[
            Failure("c", "f.csv", "expect_x", "col", {"a": float("nan")}, 1, [{"line": 2, "value": float("nan")}])
        ],
        checks=["c"],
    )
    data = result.to_dict()
    failure = json.loads(json.dumps(data, allow_nan=False))["failures"][0]
    assert failure["examples"] == [{"line": 2, "value": None}] and failure["kwargs"] == {"a": None}


def test_import_is_lazy():
    """The CLI imports this module; great_expectations (seconds to import) must not come with it."""
    code = "import sys, components.validate; print('great_expectations' in sys.modules)"
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- the shared CSV reader (energy and medical checks) -------------------------------------------


def test_read_csv_cells_indexes_by_file_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,\n\n3,4\n")
    cells = read_csv_cells("t.csv read", path)
    assert list(cells.index) == [2, 3, 4] and cells.index.name == "line"  # the blank line 3 is kept
    assert cells.loc[2].tolist() == ["1", ""] and cells.loc[4].tolist() == ["3", "4"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"a,b\n" + b"1,2\n" * 40000 + b"3,\x004\n", "binary file (a NUL byte at line 40002, byte 160006)"),
        (b"a,b\n1,\xff\n", "not UTF-8 text (binary?): byte"),
        (b"a\n1,2\n", "more fields than the header (line 1)"),
    ],
    ids=["empty", "nul-deep", "not-utf8", "surplus-field"],
)
def test_read_csv_cells_refuses_with_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(ValidationFailed) as err:
        read_csv_cells("t.csv read", path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot be read: ") and reason in message, message
    assert len(message.splitlines()) == 1


def test_require_text_scans_past_its_chunks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"x\n" * 10 + b"\x00")
    with pytest.raises(ValidationFailed, match=r"a NUL byte at line 11, byte 20\)"):
        require_text("c", path, chunk_size=3)  # the NUL lies in the 7th chunk
    with pytest.raises(ValidationFailed, match="cannot open the file"):
        require_text("c", tmp_path / "absent.csv")
