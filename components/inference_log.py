"""The append-only inference log: one JSON line per request, written by components/serve.py, read by the monitor.

Layout: `<log_dir>/<model>/v<version>.jsonl`, plus `<log_dir>/<model>/blobs/` for large cells (below).
A line: {"timestamp", "request_id", "client_request_id", "model", "version", "alias", "status",
"latency_ms", "inputs", "outputs", "error", "body_bytes"} (components/serve.py documents each field).

Caps, so that a line stays small enough to be written in one piece and read back quickly:
- a table with more than MAX_LOGGED_CELLS (rows x columns) cells is logged as a summary instead of
  records: {"summary": true, "rows", "columns", "dtypes", "head": 5 records, "tail": 5 records,
  "stats": per-column count/nulls (+ mean/std/min/max of numeric columns, unique of others)};
- one CELL that is large is logged as a capped summary instead of whole: a string longer than
  MAX_CELL_CHARS (a base64 image, a long sequence) as {"summary": true, "kind": "text", "bytes": n,
  "sha256": ..., "head": its first characters}, a nested list with more than MAX_CELL_ITEMS numbers
  (an image, a contact map) as {"summary": true, "kind": "array", "shape": [...], "sha256": ...}
  (shape read along each level's first element). With `blobs` (the server's default) the full cell
  is stored once, content-addressed, as `blobs/<sha256[:2]>/<sha256>` (the string's UTF-8 bytes, or
  the list's compact JSON), BEFORE the line is appended, and the summary says `"stored": true`:
  `restore_cells` puts it back for the monitor. Without blobs the cell is gone; the monitor then
  skips and counts that record.

Concurrency: each record is serialised first, then written with ONE os.write of the whole line to a
file opened with O_APPEND, while holding a process-wide threading.Lock (threads of one server) AND an
exclusive fcntl.flock on the file (several server processes, e.g. `--workers N`, appending to the same
file). No line is lost or interleaved. Blobs are written with components.io.atomic_write (temporary
file + rename), so two writers of the same blob never tear it. fsync is off by default (a crash of the
machine - not of the server - may lose the last records still in the page cache); `fsync=True` trades
throughput for durability.

Reading: `read_log` is strict (a line that is not JSON raises, naming it: what the tests of the
writer want); `scan_log` is tolerant (what the monitor wants): it yields every line with its number
and either the record or why it is not one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.io import atomic_write, jsonable

DEFAULT_LOG_DIR = Path("monitoring/inference")
MAX_LOGGED_CELLS = 20_000  # rows x columns above which a table is logged as a summary
SUMMARY_ROWS = 5  # head/tail records kept in a summary
MAX_CELL_CHARS = 16_384  # a string cell longer than this is capped (a 64 px demo PNG in base64 is ~5 kB)
MAX_CELL_ITEMS = 4_096  # a nested-list cell with more numbers than this is capped
CELL_HEAD_CHARS = 64  # of a capped string cell
BLOBS = "blobs"  # folder beside the log files holding capped cells

_WRITE_LOCK = threading.Lock()  # one lock for every log writer in this process


# ---- writing ----------------------------------------------------------------------------------


def log_path(log_dir: Path, model_name: str, version: str | int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_name) or "_"
    return Path(log_dir) / safe / f"v{version}.jsonl"


def blob_dir(log_file: Path) -> Path:
    """Where the capped cells of `log_file` (and of every other version of its model) are stored."""
    return Path(log_file).parent / BLOBS


def encode_record(record: dict) -> bytes:
    """One JSON line (strict JSON: NaN/inf become null; unknown objects their str())."""
    return (json.dumps(jsonable(record), separators=(",", ":"), allow_nan=False, default=str) + "\n").encode()


def append_record(path: Path, record: dict, fsync: bool = False) -> None:
    """Append one record as one line; safe across threads (lock) and processes (flock + O_APPEND)."""
    append_line(path, encode_record(record), fsync)


def append_line(path: Path, line: bytes, fsync: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _WRITE_LOCK:
        # Opened per record: survives log rotation/deletion; closing the fd releases the flock.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            written = os.write(fd, view)  # the whole line in one write: O_APPEND puts it at the end
            while written < len(view):  # a short write (signal, full disk) continues under the lock
                written += os.write(fd, view[written:])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)  # also releases the flock


# ---- reading ----------------------------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    """Every record of a log file, in order; a line that is not JSON raises ValueError naming it."""
    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err}): {line[:120]!r}") from None
    return records


def scan_log(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record, None) for each JSON-object line; (line number, None, why) for any other line.

    Blank lines are skipped. Never raises on content: a torn, hand-edited or foreign line is reported.
    """
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
                yield number, None, f"not JSON ({str(err)[:80]})"
                continue
            if not isinstance(record, dict):
                yield number, None, f"not a JSON object (a JSON {type(record).__name__})"
                continue
            yield number, record, None


# ---- large cells ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CellCap:
    """How large one logged cell may be, and where the capped ones are kept (None: nowhere)."""

    max_chars: int = MAX_CELL_CHARS
    max_items: int = MAX_CELL_ITEMS
    blobs: Path | None = None
    omit: frozenset[str] = frozenset()  # columns logged as {"summary", "kind": "omitted", bytes, sha256} only


def _shape(value: list) -> list[int]:
    shape, x = [], value
    while isinstance(x, list):
        shape.append(len(x))
        x = x[0] if x else None
    return shape


def _items(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _store(cap: CellCap, data: bytes) -> tuple[str, bool]:
    digest = hashlib.sha256(data).hexdigest()
    if cap.blobs is None:
        return digest, False
    path = Path(cap.blobs) / digest[:2] / digest
    if not path.exists():
        atomic_write(path, data)
    return digest, True


def cap_value(value: Any, cap: CellCap) -> Any:
    """`value` itself, or its capped summary when it is a long string or a big nested list."""
    if isinstance(value, str) and len(value) > cap.max_chars:
        data = value.encode("utf-8", "surrogatepass")
        digest, stored = _store(cap, data)
        return {
            "summary": True,
            "kind": "text",
            "bytes": len(data),
            "sha256": digest,
            "stored": stored,
            "head": value[:CELL_HEAD_CHARS],
        }
    if isinstance(value, list) and value and isinstance(value[0], list | int | float):
        shape = _shape(value)
        if _items(shape) > cap.max_items:
            data = json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False).encode()
            digest, stored = _store(cap, data)
            return {"summary": True, "kind": "array", "shape": shape, "sha256": digest, "stored": stored}
    return value


def omit_value(value: Any) -> dict:
    """What the log keeps of a cell in an omitted column: its size and hash, so a repeat is recognisable."""
    data = json.dumps(jsonable(value), separators=(",", ":")).encode() if not isinstance(value, str) else value.encode()
    return {"summary": True, "kind": "omitted", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def cap_records(records: Any, cap: CellCap) -> Any:
    """Records (a list of dicts), a list of cells, or one cell, with every large cell capped."""
    if isinstance(records, list):
        if records and all(isinstance(r, dict) for r in records):
            return [{k: omit_value(v) if k in cap.omit else cap_value(v, cap) for k, v in r.items()} for r in records]
        return [cap_value(v, cap) for v in records]
    return cap_value(records, cap)


def is_capped_cell(value: Any) -> bool:
    return isinstance(value, dict) and value.get("summary") is True and value.get("kind") in ("text", "array")


class MissingBlob(LookupError):
    """A capped cell whose full content was not stored (or was deleted)."""


def restore_value(value: Any, blobs: Path | None) -> Any:
    if not is_capped_cell(value):
        return value
    digest = str(value.get("sha256", ""))
    path = Path(blobs) / digest[:2] / digest if blobs is not None and re.fullmatch(r"[0-9a-f]{64}", digest) else None
    if path is None or not path.is_file():
        raise MissingBlob(f"a capped {value.get('kind')} cell (sha256 {digest[:12]}...) has no stored copy")
    data = path.read_bytes()
    return data.decode("utf-8", "surrogatepass") if value["kind"] == "text" else json.loads(data)


def restore_cells(records: Any, blobs: Path | None) -> Any:
    """The inverse of cap_records where the blobs exist; MissingBlob where one does not."""
    if isinstance(records, list):
        return [
            {k: restore_value(v, blobs) for k, v in r.items()} if isinstance(r, dict) else restore_value(r, blobs)
            for r in records
        ]
    return restore_value(records, blobs)


# ---- tables -> JSON ---------------------------------------------------------------------------


def frame_records(frame) -> list[dict]:
    """A DataFrame as JSON-ready records, datetime columns as ISO strings, NaN/NaT as null."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype):
            out[column] = series.map(lambda t: None if pd.isna(t) else t.isoformat()).astype(object)
    return jsonable(out.to_dict(orient="records"))


def summarize_frame(frame, cap: CellCap | None = None) -> dict:
    """What the log keeps of a DataFrame too large to store whole."""
    import pandas as pd

    cap = cap or CellCap()
    stats = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            stats[str(column)] = {
                "count": int(series.count()),
                "nulls": int(series.isna().sum()),
                "mean": series.mean(),
                "std": series.std(),
                "min": series.min(),
                "max": series.max(),
            }
        else:
            try:
                unique = int(series.nunique())
            except TypeError:  # unhashable cells (lists)
                unique = None
            stats[str(column)] = {"count": int(series.count()), "nulls": int(series.isna().sum()), "unique": unique}
    return jsonable(
        {
            "summary": True,
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            "head": cap_records(frame_records(frame.head(SUMMARY_ROWS)), cap),
            "tail": cap_records(frame_records(frame.tail(SUMMARY_ROWS)), cap),
            "stats": stats,
        }
    )


def loggable(frame, max_cells: int = MAX_LOGGED_CELLS, cap: CellCap | None = None):
    """Records (large cells capped) when the frame is small enough, else its summary (module docstring)."""
    if frame is None:
        return None
    cap = cap or CellCap()
    cells = len(frame) * max(len(frame.columns), 1)
    return cap_records(frame_records(frame), cap) if cells <= max_cells else summarize_frame(frame, cap)


def prediction_records(predictions) -> Any:
    """Model output -> JSON: a DataFrame as records, a Series/array as a list, anything else as is."""
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return frame_records(predictions)
    if isinstance(predictions, pd.Series):
        return frame_records(predictions.to_frame("prediction"))
    return jsonable(predictions)


def cells(records) -> int:
    if isinstance(records, list):
        return sum(len(r) if isinstance(r, (dict, list)) else 1 for r in records)
    return 1


def loggable_outputs(records, max_cells: int = MAX_LOGGED_CELLS, cap: CellCap | None = None) -> Any:
    """The prediction records with large cells capped, or a summary when there are too many cells."""
    import pandas as pd

    if records is None:
        return None
    cap = cap or CellCap()
    capped = cap_records(records, cap)
    if cells(capped) <= max_cells:
        return capped
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return summarize_frame(pd.DataFrame.from_records(records), cap)
    return {"summary": True, "rows": len(records) if isinstance(records, list) else 1}


def body_excerpt(body: bytes | None, chars: int) -> dict | None:
    """What the log keeps of a rejected body that is not a table."""
    if not body:
        return None
    return {"unparsed": True, "excerpt": body[: chars * 4].decode("utf-8", "replace")[:chars]}
