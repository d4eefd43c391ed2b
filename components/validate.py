"""Data validation with Great Expectations 1.x, reported by file, column and line.

Every project's ``validate`` stage builds a list of :class:`Check` (one GX
``ExpectationSuite`` run on one DataFrame read from one file) and hands it to
:func:`run_checks`. The frames are indexed by the 1-based line number in the
source file (the header is line 1), so every failing value is reported with the
line it sits on: GX returns the frame index of each unexpected row
(``unexpected_index_list``) when the result format is ``COMPLETE``.

``great_expectations`` takes about 2.5 s to import, so it is imported lazily
inside the functions that need it; importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.io import atomic_write
from components.io import jsonable as plain_json

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

__all__ = [
    "Check",
    "Failure",
    "ValidationFailed",
    "ValidationResult",
    "read_csv_cells",
    "read_failure",
    "require_text",
    "run_checks",
    "write_report",
]

MAX_EXAMPLES = 5


def jsonable(value: Any) -> Any:
    """Report values as the data file spells them (timestamps with a space, as in the CSVs)."""
    return plain_json(value, time_sep=" ")


@dataclass
class Check:
    """One GX suite run on one DataFrame made from one file."""

    name: str  # e.g. "ETTh1.csv cells"
    file: Path  # the file the frame was read from (named in every message)
    frame: pd.DataFrame  # index = 1-based line number in the file (header is line 1)
    suite: gx.ExpectationSuite


@dataclass
class Failure:
    """One failed expectation of one check."""

    check: str
    file: str
    expectation: str  # GX expectation type, e.g. "expect_column_values_to_match_regex"
    column: str | None  # None for table-level expectations
    kwargs: dict  # the expectation's arguments (without GX's batch_id)
    unexpected_count: int | None  # None for table-level expectations
    examples: list[dict]  # [{"line": 17, "value": "abc"}, ...], at most MAX_EXAMPLES
    observed: Any = None  # table-level expectations: GX's observed value (e.g. the columns found)
    description: str | None = None  # the expectation's own description, when it has one
    error: str | None = None  # the expectation could not be evaluated (GX raised)


@dataclass
class ValidationResult:
    success: bool
    n_expectations: int
    failures: list[Failure]
    checks: list[str]
    # one row per check: name, file, rows, expectations, failed (for the report's table)
    check_summaries: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_failures"] = len(self.failures)
        return jsonable(d)

    def summary_markdown(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        n_failed_exp = len(self.failures)
        lines = [
            "# Data validation",
            "",
            f"**{status}**: {self.n_expectations - n_failed_exp} of {self.n_expectations} "
            f"expectations passed in {len(self.checks)} check(s).",
            "",
        ]
        if self.check_summaries:
            lines += [
                "| check | file | rows | expectations | failed | status |",
                "|---|---|---:|---:|---:|---|",
            ]
            for s in self.check_summaries:
                ok = "pass" if s.get("failed", 0) == 0 else "FAIL"
                lines.append(
                    f"| {_md(s['name'])} | {_md(s['file'])} | {s.get('rows', '')} | "
                    f"{s.get('expectations', '')} | {s.get('failed', '')} | {ok} |"
                )
            lines.append("")
        if self.failures:
            lines += ["## Failures", ""]
            for i, f in enumerate(self.failures, 1):
                lines.append(f"### {i}. {_md(f.check)}: `{f.expectation}`")
                lines.append("")
                lines.append(f"- file: `{f.file}`")
                lines.append(f"- column: {'`' + f.column + '`' if f.column else '(table)'}")
                lines.append(f"- problem: {_md(_problem(f))}")
                if f.description:
                    lines.append(f"- expectation: {_md(f.description)}")
                args = {k: v for k, v in f.kwargs.items() if k != "column"}
                if args:
                    lines.append(f"- arguments: `{json.dumps(jsonable(args))}`")
                if f.unexpected_count is not None:
                    lines.append(f"- unexpected values: {f.unexpected_count}")
                if f.observed is not None:
                    lines.append(f"- observed: `{json.dumps(jsonable(f.observed))}`")
                if f.error:
                    lines.append(f"- error: {_md(f.error)}")
                if f.examples:
                    lines += ["", "| line | value |", "|---:|---|"]
                    for ex in f.examples:
                        lines.append(f"| {ex['line']} | {_md(_fmt_value(ex['value']))} |")
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def error_message(self) -> str:
        if not self.failures:
            return f"all {self.n_expectations} expectations passed"
        return "\n\n".join(_failure_paragraph(f) for f in self.failures)


class ValidationFailed(RuntimeError):
    """Raised by a validate stage; ``str()`` is ``result.error_message()``."""

    def __init__(self, result: ValidationResult):
        self.result = result
        super().__init__(result.error_message())

    def __str__(self) -> str:
        return self.result.error_message()


def read_failure(check: str, file: Path | str, reason: str) -> ValidationFailed:
    """A ValidationFailed for a file that could not even be read into a frame."""
    failure = Failure(
        check=check,
        file=str(file),
        expectation="file_is_readable",
        column=None,
        kwargs={},
        unexpected_count=None,
        examples=[],
        error=reason,
    )
    result = ValidationResult(
        success=False,
        n_expectations=1,
        failures=[failure],
        checks=[check],
        check_summaries=[{"name": check, "file": str(file), "rows": 0, "expectations": 1, "failed": 1}],
    )
    return ValidationFailed(result)


# --------------------------------------------------------------------------- reading


def require_text(check: str, path: Path | str, chunk_size: int = 1 << 20) -> None:
    """Raise a read failure unless `path` opens, is not empty and holds no NUL byte anywhere.

    The whole file is scanned (a chunk at a time), not just its head: a NUL byte deep in a CSV
    is binary junk that pandas would read as an odd cell. The message names the line and byte.
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by the with below)
    except OSError as exc:
        raise read_failure(check, path, f"cannot open the file: {exc.strerror or exc}") from None
    with f:
        offset, line = 0, 1
        while chunk := f.read(chunk_size):
            at = chunk.find(b"\x00")
            if at >= 0:
                line += chunk.count(b"\n", 0, at)
                raise read_failure(
                    check, path, f"binary file (a NUL byte at line {line}, byte {offset + at}), not CSV text"
                )
            offset, line = offset + len(chunk), line + chunk.count(b"\n")
    if offset == 0:
        raise read_failure(check, path, "the file is empty (no header line, no data)")


def read_csv_cells(check: str, path: Path | str) -> pd.DataFrame:
    """Every cell of a CSV as a string ('' when empty), indexed by the 1-based line in the file.

    The header is line 1, so the first data row is line 2; blank lines are kept as rows so the
    numbering stays exact (one record per physical line: no quoted newlines). Anything that stops
    the file from being read (missing, empty, NUL bytes, not UTF-8, not CSV, rows with more
    fields than the header) raises ValidationFailed naming the file, never a pandas traceback.
    """
    import pandas as pd

    path = Path(path)
    require_text(check, path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,  # keep blank lines as rows so line numbers stay exact
                index_col=False,  # never turn a surplus first field into the index
                encoding="utf-8",
            )
    except UnicodeDecodeError as exc:
        raise read_failure(check, path, f"not UTF-8 text (binary?): byte {exc.start} cannot be decoded") from None
    except pd.errors.EmptyDataError:
        raise read_failure(check, path, "no CSV header line (the file is blank)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise read_failure(check, path, f"cannot be parsed as CSV: {reason}") from None
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            raise read_failure(
                check,
                path,
                f"cannot be parsed as CSV: the data rows have more fields than the header (line 1) ({w.message})",
            )
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    return frame.fillna("")  # a missing trailing field reads as NaN even with na_filter off


# --------------------------------------------------------------------------- running


def run_checks(checks: list[Check]) -> ValidationResult:
    """Run every check's suite on its frame in one ephemeral GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_logger = logging.getLogger("great_expectations")
    old_level = gx_logger.level
    gx_logger.setLevel(logging.ERROR)
    try:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        datasource = context.data_sources.add_pandas(name="scifolio_validate")

        failures: list[Failure] = []
        summaries: list[dict] = []
        n_expectations = 0
        for i, check in enumerate(checks):
            asset = datasource.add_dataframe_asset(name=f"check_{i}")
            batch_definition = asset.add_batch_definition_whole_dataframe(name="whole")
            # With a named index GX reports each unexpected row as a dict {column: value,
            # index name: index}; unnamed, it reports the bare index (the line number).
            frame = check.frame.rename_axis(index=None)
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            suite_result = batch.validate(check.suite, result_format="COMPLETE")
            results = _in_suite_order(check.suite, list(suite_result.results))
            check_failures = [_to_failure(check, r) for r in results if not r.success]
            failures += check_failures
            n_expectations += len(results)
            summaries.append(
                {
                    "name": check.name,
                    "file": str(check.file),
                    "rows": int(len(check.frame)),
                    "expectations": len(results),
                    "failed": len(check_failures),
                }
            )
    finally:
        gx_logger.setLevel(old_level)

    return ValidationResult(
        success=not failures,
        n_expectations=n_expectations,
        failures=failures,
        checks=[c.name for c in checks],
        check_summaries=summaries,
    )


def _expectation_key(config: Any) -> str:
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    return config.type + json.dumps(jsonable(kwargs), sort_keys=True)


def _in_suite_order(suite: Any, results: list) -> list:
    """GX returns results in its own order (errors first); report them as the suite lists them."""
    order: dict[str, int] = {}
    for i, expectation in enumerate(suite.expectations):
        order.setdefault(_expectation_key(expectation.configuration), i)
    return sorted(results, key=lambda r: order.get(_expectation_key(r.expectation_config), 10**9))


def _to_failure(check: Check, r: Any) -> Failure:
    config = r.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    result = dict(r.result or {})
    column = kwargs.get("column")

    examples: list[dict] = []
    index_list = result.get("unexpected_index_list")
    value_list = result.get("unexpected_list")
    if index_list is None:
        index_list = result.get("partial_unexpected_index_list")
        value_list = result.get("partial_unexpected_list")
    if index_list:
        values = list(value_list or [])
        for j, idx in enumerate(index_list[:MAX_EXAMPLES]):
            if isinstance(idx, dict):  # {column: value, index name: index} for named indexes
                keys = [k for k in idx if k != column] or list(idx)
                idx = idx[keys[-1]]
            value = values[j] if j < len(values) else None
            examples.append({"line": jsonable(idx), "value": jsonable(value)})

    error = None
    exception_info = r.exception_info or {}
    if exception_info.get("raised_exception"):
        error = exception_info.get("exception_message")
    else:  # GX >= 1.x keys exception infos by metric when a metric raised
        for info in exception_info.values():
            if isinstance(info, dict) and info.get("raised_exception"):
                error = info.get("exception_message")
                break

    count = result.get("unexpected_count")
    return Failure(
        check=check.name,
        file=str(check.file),
        expectation=config.type,
        column=column,
        kwargs=jsonable(kwargs),
        unexpected_count=None if count is None else int(count),
        examples=examples,
        observed=jsonable(result.get("observed_value")) if "observed_value" in result else None,
        description=getattr(config, "description", None) or None,
        error=error,
    )


# --------------------------------------------------------------------------- messages


def _fmt_value(value: Any) -> str:
    if value is None:
        return "empty/missing"
    return repr(value)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _problem(f: Failure) -> str:
    """A short human wording of what the expectation demanded."""
    k = f.kwargs
    e = f.expectation
    if e == "file_is_readable":
        return f"cannot be read: {f.error}"
    if f.error:
        return f"could not be checked: {f.error}"
    if e == "expect_column_values_to_not_be_null":
        return "empty or missing (null) value"
    if e == "expect_column_values_to_match_regex":
        return f"does not match the pattern {k.get('regex')!r}"
    if e == "expect_column_values_to_match_strftime_format":
        return f"does not match the time format {k.get('strftime_format')!r}"
    if e == "expect_column_values_to_be_between":
        return f"outside the range [{k.get('min_value')}, {k.get('max_value')}]"
    if e == "expect_column_values_to_be_in_set":
        return f"not one of {k.get('value_set')}"
    if e == "expect_column_values_to_be_unique":
        return "duplicated value"
    if e == "expect_column_values_to_be_increasing":
        strict = "strictly " if k.get("strictly") else ""
        return f"not {strict}increasing (not greater than the previous row)"
    if e == "expect_table_columns_to_match_ordered_list":
        return _column_list_problem(f.observed, k.get("column_list"))
    if e == "expect_table_columns_to_match_set":
        return f"columns {f.observed} instead of {k.get('column_set')}"
    if e == "expect_column_to_exist":
        return "column missing"
    if e == "expect_table_row_count_to_be_between":
        lo, hi = k.get("min_value"), k.get("max_value")
        if hi is None:
            want = f"at least {lo}"
        else:
            want = f"at most {hi}" if lo is None else f"{lo} to {hi}"
        return f"{f.observed} data rows, expected {want}"
    args = ", ".join(f"{key}={val!r}" for key, val in k.items() if key != "column")
    observed = f"; observed {f.observed!r}" if f.observed is not None else ""
    return f"failed ({args}){observed}" if args else f"failed{observed}"


def _column_list_problem(observed: Any, expected: Any) -> str:
    found = list(observed or [])
    want = list(expected or [])
    missing = [c for c in want if c not in found]
    extra = [c for c in found if c not in want]
    parts = []
    for label, cols in (("missing", missing), ("unexpected", extra)):
        if cols:
            plural = "s" if len(cols) > 1 else ""
            parts.append(f"{label} column{plural} {', '.join(map(repr, cols))}")
    if not parts:
        parts.append("columns in the wrong order")
    return f"{'; '.join(parts)} (found {found}, expected {want})"


def _failure_paragraph(f: Failure) -> str:
    if f.column:
        head = f"{f.file}: column {f.column!r}"
    elif f.expectation.startswith("expect_table_column"):
        head = f"{f.file}: header (line 1)"  # the Check contract: the header is line 1
    else:
        head = f"{f.file}"
    if f.examples:
        if all(ex["value"] is None for ex in f.examples):  # empty cells: the lines say it all
            lines = ", ".join(str(ex["line"]) for ex in f.examples)
            shown = f"line{'s' if len(f.examples) > 1 else ''} {lines}"
        else:
            shown = "; ".join(f"line {ex['line']}: value {_fmt_value(ex['value'])}" for ex in f.examples)
        n = f.unexpected_count if f.unexpected_count is not None else len(f.examples)
        more = f" (+{n - len(f.examples)} more, {n} in all)" if n > len(f.examples) else ""
        text = f"{head}, {shown}{more}: {_problem(f)}"
    else:
        text = f"{head}: {_problem(f)}"
    if f.description:
        text += f"; {f.description.rstrip('.')}"
    return f"{text} ({f.expectation}, check {f.check!r})"


# --------------------------------------------------------------------------- report


def write_report(result: ValidationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write out_dir/validation.json and validation.md atomically; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "validation.json"
    md_path = out_dir / "validation.md"
    atomic_write(json_path, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    atomic_write(md_path, result.summary_markdown())
    return json_path, md_path
