"""Writing files so that a reader never sees half of one, and turning values into plain JSON.

One atomic writer (`atomic_write`, text or bytes or a callback that writes a path), one atomic
folder (`atomic_dir`) and one JSON sanitiser (`jsonable`) for every stage, report and log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: Path, content: str | bytes | Callable[[Path], None], fsync: bool = False) -> Path:
    """Write `content` (text, bytes, or a function writing the given temporary path) to `path` atomically.

    The bytes go to a temporary file beside `path`, which replaces `path` in one rename only once
    complete: a crash leaves the old file or the new one, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if callable(content):
            os.close(fd)
            content(Path(tmp))
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, text)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; on success it replaces `target`.

    A failure removes the temporary folder and leaves `target` as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; stage outputs are ordinary folders
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists() or target.is_symlink():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def jsonable(value: Any, time_sep: str = "T") -> Any:
    """Plain JSON values: numpy/pandas scalars unboxed, NaN/inf/NaT -> None, times -> ISO strings, paths -> str.

    `time_sep=" "` writes timestamps as data files spell them (validation reports quote the file's value).
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v, time_sep) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, time_sep) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=time_sep)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    type_name = type(value).__name__
    if type_name in ("NaTType", "NAType"):
        return None
    if type_name in ("datetime64", "timedelta64"):  # numpy's .item()/.tolist() would give raw integers
        import pandas as pd

        converted = pd.Timestamp(value) if type_name == "datetime64" else pd.Timedelta(value)
        return None if pd.isna(converted) else jsonable(converted, time_sep)
    if type_name == "Timestamp":  # pandas
        return value.isoformat(sep=time_sep)
    if hasattr(value, "isoformat"):  # pandas Timedelta and the like
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist(), time_sep)
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
