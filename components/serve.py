"""Serve the deployed version of a registered model over REST, with an append-only inference log.

    python -m components.serve energy                      # models:/energy@champion on 127.0.0.1:5050
    python -m components.serve energy --alias challenger --port 5051 --workers 2

Project-agnostic: any pyfunc in the MLflow registry. `create_app` resolves `models:/<name>@<alias>` to
its concrete version ONCE at start and loads `models:/<name>/<version>`, so the model answering is
exactly the registered one, even if the alias moves while the server runs (restart to pick up a new
champion; every response and log line names the version that produced it).

Endpoints
    GET  /health       {"status": "ok", "model", "version", "alias", "data_version", "log_file"}
    GET  /metadata     the signature's inputs/outputs/params and the version's tags
    POST /invocations  MLflow's scoring protocol: {"dataframe_split": {"columns": [...], "data": [...]}}
                       or {"dataframe_records": [{...}, ...]} (optionally "params": {...}), ->
                       {"predictions": [records], "model_version": "<v>"}; header X-Request-ID.

Errors are JSON `{"error": "<message>"}`, never a traceback:
    400  body not JSON / not UTF-8, top-level value not an object, not exactly one of
         dataframe_split / dataframe_records, unknown keys, a payload that is not a table
    413  body larger than MAX_BODY_BYTES
    422  a well-formed table the model refuses: empty, missing a required column, a value that does
         not convert to the signature's type (MLflow's schema enforcement, MlflowException), or the
         model's own ValueError (e.g. pipelines.energy.pyfunc.InputError)
    500  anything else (a bug, not the client's fault): the server logs the traceback and keeps serving

The inference log: every POST /invocations (accepted or rejected) appends ONE JSON line to
`<log_dir>/<name>/v<version>.jsonl`:
    {"timestamp": UTC ISO-8601, "request_id": uuid4, "client_request_id": X-Request-ID sent by the
     client or null, "model": name, "version": v, "alias": alias, "status": HTTP status,
     "latency_ms": request received -> response ready (parsing + validation + predict; the log
     write itself is excluded), "inputs": the request's DataFrame as records (after the signature's
     type casts; timestamps as ISO strings) or null if the body was not a table, "outputs": the
     prediction records or null, "error": the message or null, "body_bytes": request size}
Cap: a DataFrame with more than MAX_LOGGED_CELLS (rows x columns) cells is logged as a summary
instead of records: {"summary": true, "rows", "columns", "dtypes", "head": 5 records, "tail": 5
records, "stats": per-numeric-column count/nulls/mean/std/min/max}. A rejected body that is not a
table is logged by size plus its first BODY_EXCERPT_CHARS characters.

Concurrency: each record is serialised first, then written with ONE os.write of the whole line to a
file opened with O_APPEND, while holding a process-wide threading.Lock (threads of one server) AND
an exclusive fcntl.flock on the file (several server processes, e.g. `--workers N`, appending to the
same file). No line is lost or interleaved. fsync is off by default (a crash of the machine - not of
the server - may lose the last records still in the page cache); `fsync=True` trades throughput for
durability.
"""

import argparse
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from components.io import jsonable

log = logging.getLogger("scifolio.serve")

DEFAULT_LOG_DIR = Path("monitoring/inference")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # components.config.TrackingConfig's default
MAX_BODY_BYTES = 32 * 1024 * 1024  # larger requests get 413 without being parsed
MAX_LOGGED_CELLS = 20_000  # rows x columns above which a DataFrame is logged as a summary
SUMMARY_ROWS = 5  # head/tail records kept in a summary
BODY_EXCERPT_CHARS = 256  # of a rejected body that is not a table
MAX_ERROR_CHARS = 2_000  # error messages are cut to this length
FORMATS = ("dataframe_split", "dataframe_records")
ALLOWED_KEYS = (*FORMATS, "params")
ENV_PREFIX = "SCIFOLIO_SERVE_"  # how `serve(workers>1)` hands its settings to uvicorn's workers

_WRITE_LOCK = threading.Lock()  # one lock for every log writer in this process


# ---- the inference log ----------------------------------------------------------------------


def log_path(log_dir: Path, model_name: str, version: str | int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_name) or "_"
    return Path(log_dir) / safe / f"v{version}.jsonl"


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


# ---- DataFrames <-> JSON --------------------------------------------------------------------


def frame_records(frame) -> list[dict]:
    """A DataFrame as JSON-ready records, datetime columns as ISO strings, NaN/NaT as null."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype):
            out[column] = series.map(lambda t: None if pd.isna(t) else t.isoformat()).astype(object)
    return jsonable(out.to_dict(orient="records"))


def summarize_frame(frame) -> dict:
    """What the log keeps of a DataFrame too large to store whole."""
    import pandas as pd

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
            stats[str(column)] = {
                "count": int(series.count()),
                "nulls": int(series.isna().sum()),
                "unique": int(series.nunique()),
            }
    return jsonable(
        {
            "summary": True,
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            "head": frame_records(frame.head(SUMMARY_ROWS)),
            "tail": frame_records(frame.tail(SUMMARY_ROWS)),
            "stats": stats,
        }
    )


def loggable(frame, max_cells: int = MAX_LOGGED_CELLS):
    """Records when the frame is small enough, else its summary (see the module docstring)."""
    if frame is None:
        return None
    cells = len(frame) * max(len(frame.columns), 1)
    return frame_records(frame) if cells <= max_cells else summarize_frame(frame)


def prediction_records(predictions) -> Any:
    """Model output -> JSON: a DataFrame as records, a Series/array as a list, anything else as is."""
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return frame_records(predictions)
    if isinstance(predictions, pd.Series):
        return frame_records(predictions.to_frame("prediction"))
    return jsonable(predictions)


# ---- requests -------------------------------------------------------------------------------


class RemoteBindRefused(ValueError):
    """serve() was asked for a non-loopback host without allow_remote=True."""


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP status, the message tells what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def short(message: Any) -> str:
    text = str(message)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 15] + " ... (truncated)"


def schema_error_message(err: Exception) -> str:
    """MLflow's schema-enforcement message repeats the whole input; keep what says what is wrong."""
    text = getattr(err, "message", None) or str(err)
    match = re.search(r"Failed to enforce schema of data .*? Error: (.*)$", text, re.DOTALL)
    if match:
        return f"input does not match the model signature: {match.group(1).strip()}"
    return text


def parse_body(body: bytes, input_schema=None):
    """Request body -> (DataFrame, params), or RequestError(400/422) saying what is wrong."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.proto_json_utils import MlflowFailedTypeConversion, dataframe_from_parsed_json

    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise RequestError(
            400, f"the body must be a JSON object with one of {list(FORMATS)}, got a JSON {type(payload).__name__}"
        )
    formats = [key for key in FORMATS if key in payload]
    unknown = sorted(set(payload) - set(ALLOWED_KEYS))
    if len(formats) != 1 or unknown:
        found = f"got keys {sorted(payload)}" if payload else "got an empty object"
        raise RequestError(400, f"the body must hold exactly one of {list(FORMATS)} (and optionally 'params'); {found}")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestError(400, f"'params' must be a JSON object, got a JSON {type(params).__name__}")
    key = formats[0]
    try:
        frame = dataframe_from_parsed_json(
            payload[key], pandas_orient=key.removeprefix("dataframe_"), schema=input_schema
        )
    except MlflowFailedTypeConversion as err:  # a table whose values do not fit the signature
        raise RequestError(422, err.message) from None
    except MlflowException as err:  # not a table in that orientation (wrong type, ragged rows, ...)
        raise RequestError(400, err.message) from None
    except (TypeError, ValueError) as err:
        raise RequestError(400, f"{key} is not a table: {err}") from None
    return frame, params


def check_frame(frame, input_schema) -> None:
    """Refuse what no model can use, with a readable message (the pyfunc enforces the rest)."""
    if frame.empty:
        raise RequestError(422, f"empty dataframe: {len(frame)} rows, {len(frame.columns)} columns")
    if input_schema is not None and input_schema.has_input_names():
        missing = [c for c in input_schema.required_input_names() if c not in frame.columns]
        if missing:
            raise RequestError(
                422, f"missing required column(s) {missing}; the model's inputs are {input_schema.input_names()}"
            )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- the service and the app ----------------------------------------------------------------


class ModelService:
    """The loaded model version plus its inference log; `invoke` is what POST /invocations runs."""

    def __init__(
        self,
        model_name: str,
        alias: str,
        version: str | None,
        log_dir: Path,
        tracking_uri: str | None,
        fsync: bool,
        max_logged_cells: int,
    ):
        import mlflow

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        mlflow.set_tracking_uri(uri)  # models:/ URIs resolve against this store's registry
        client = mlflow.MlflowClient(tracking_uri=uri)
        if version is None:
            version = client.get_model_version_by_alias(model_name, alias).version
        self.entity = client.get_model_version(model_name, str(version))
        self.name, self.alias, self.version = model_name, alias, str(self.entity.version)
        self.tracking_uri = uri
        self.model = mlflow.pyfunc.load_model(f"models:/{model_name}/{self.version}")
        self.input_schema = self.model.metadata.get_input_schema()
        self.output_schema = self.model.metadata.get_output_schema()
        self.params_schema = self.model.metadata.get_params_schema()
        self.tags = dict(self.entity.tags or {})
        self.log_file = log_path(log_dir, model_name, self.version)
        self.fsync = fsync
        self.max_logged_cells = max_logged_cells
        self.log_errors = 0
        self.served = 0
        log.info("serving %s v%s (alias %s) from %s; log %s", model_name, self.version, alias, uri, self.log_file)

    def health(self) -> dict:
        return {
            "status": "ok",
            "model": self.name,
            "version": self.version,
            "alias": self.alias,
            "data_version": self.tags.get("scifolio.data_version"),
            "log_file": str(self.log_file),
            "requests": self.served,
            "log_errors": self.log_errors,
        }

    def metadata(self) -> dict:
        def schema(s):
            return s.to_dict() if s is not None else None

        return {
            "model": self.name,
            "version": self.version,
            "alias": self.alias,
            "model_uri": f"models:/{self.name}/{self.version}",
            "run_id": self.entity.run_id,
            "signature": {
                "inputs": schema(self.input_schema),
                "outputs": schema(self.output_schema),
                "params": schema(self.params_schema),
            },
            "tags": self.tags,
        }

    def predict(self, body: bytes):
        """-> (status, response payload, input frame or None, predictions or None, error or None)."""
        from mlflow.exceptions import MlflowException

        frame = None
        try:
            frame, params = parse_body(body, self.input_schema)
            check_frame(frame, self.input_schema)
            try:
                predictions = self.model.predict(frame, params=params) if params else self.model.predict(frame)
            except MlflowException as err:  # MLflow's schema/params enforcement
                raise RequestError(422, schema_error_message(err)) from None
            except ValueError as err:  # the model's own input checks (e.g. energy's InputError)
                raise RequestError(422, str(err)) from None
            records = prediction_records(predictions)
            return 200, {"predictions": records, "model_version": self.version}, frame, records, None
        except RequestError as err:
            message = short(err)
            return err.status, {"error": message}, frame, None, message
        except Exception as err:  # a bug: answer 500, keep serving
            log.exception("%s v%s: unexpected error", self.name, self.version)
            message = short(f"internal error: {type(err).__name__}: {err}")
            return 500, {"error": message}, frame, None, message

    def invoke(
        self,
        body: bytes | None,
        started: float,
        client_request_id: str | None,
        status: int | None = None,
        error: str | None = None,
        body_bytes: int | None = None,
    ):
        """Predict (unless `status` is already decided, e.g. 413), log one line, return the answer."""
        request_id = str(uuid.uuid4())
        frame = outputs = None
        if status is None:
            status, payload, frame, outputs, error = self.predict(body)
        else:
            payload = {"error": error}
        latency_ms = (time.perf_counter() - started) * 1000.0
        record = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "request_id": request_id,
            "client_request_id": client_request_id,
            "model": self.name,
            "version": self.version,
            "alias": self.alias,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "inputs": None,
            "outputs": None,
            "error": error,
            "body_bytes": body_bytes if body_bytes is not None else len(body or b""),
        }
        try:
            record["inputs"] = loggable_inputs(frame, body, self.max_logged_cells)
            if outputs is not None:
                record["outputs"] = outputs if _cells(outputs) <= self.max_logged_cells else summarize_outputs(outputs)
            append_line(self.log_file, encode_record(record), self.fsync)
        except Exception:  # the answer still goes out; /health counts what the log missed
            self.log_errors += 1
            log.exception("%s: could not append request %s", self.log_file, request_id)
        self.served += 1
        return status, payload, request_id


def loggable_inputs(frame, body: bytes | None, max_cells: int):
    if frame is not None:
        return loggable(frame, max_cells)
    if body:
        return {
            "unparsed": True,
            "excerpt": body[: BODY_EXCERPT_CHARS * 4].decode("utf-8", "replace")[:BODY_EXCERPT_CHARS],
        }
    return None


def _cells(records) -> int:
    if isinstance(records, list):
        return sum(len(r) if isinstance(r, (dict, list)) else 1 for r in records)
    return 1


def summarize_outputs(records) -> Any:
    import pandas as pd

    if isinstance(records, list) and records and isinstance(records[0], dict):
        return summarize_frame(pd.DataFrame.from_records(records))
    return {"summary": True, "rows": len(records) if isinstance(records, list) else 1}


def create_app(
    model_name: str,
    alias: str = "champion",
    log_dir: Path = DEFAULT_LOG_DIR,
    *,
    version: str | int | None = None,
    tracking_uri: str | None = None,
    fsync: bool = False,
    max_logged_cells: int = MAX_LOGGED_CELLS,
):
    """The FastAPI app serving `models:/<model_name>@<alias>`, resolved to its version now, once.

    `version` pins a version (what `serve(workers>1)` passes so that every worker serves the one
    version the parent resolved); `tracking_uri` defaults to $MLFLOW_TRACKING_URI, else the
    project's embedded store sqlite:///mlflow.db.
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    service = ModelService(
        model_name,
        alias,
        None if version is None else str(version),
        Path(log_dir),
        tracking_uri,
        fsync,
        max_logged_cells,
    )
    app = FastAPI(
        title=f"scifolio: {model_name}",
        version=service.version,
        description=f"models:/{model_name}/{service.version} (alias {alias} at start)",
    )
    app.state.service = service

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):  # outside /invocations' own handling
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        return JSONResponse({"error": short(f"internal error: {type(err).__name__}: {err}")}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        return service.health()

    @app.get("/metadata")
    def metadata() -> dict:
        return service.metadata()

    @app.post("/invocations")
    async def invocations(request: Request):
        started = time.perf_counter()
        client_id = request.headers.get("x-request-id")
        client_id = client_id[:128] if client_id else None
        body, status, error, size = await read_capped(request)
        status, payload, request_id = await run_in_threadpool(
            service.invoke, body, started, client_id, status, error, size
        )
        return JSONResponse(payload, status_code=status, headers={"X-Request-ID": request_id})

    return app


async def read_capped(request) -> tuple[bytes | None, int | None, str | None, int]:
    """The body, or (None, 413, message, size) once it is larger than MAX_BODY_BYTES."""
    too_large = f"the body is larger than {MAX_BODY_BYTES} bytes"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None, 413, too_large, int(declared)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None, 413, too_large, size
        chunks.append(chunk)
    return b"".join(chunks), None, None, size


def app_from_env():
    """uvicorn factory for `serve(workers>1)`: each worker builds the app from SCIFOLIO_SERVE_*."""
    env = os.environ
    return create_app(
        env[f"{ENV_PREFIX}MODEL"],
        env.get(f"{ENV_PREFIX}ALIAS", "champion"),
        Path(env.get(f"{ENV_PREFIX}LOG_DIR", str(DEFAULT_LOG_DIR))),
        version=env.get(f"{ENV_PREFIX}VERSION") or None,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        fsync=env.get(f"{ENV_PREFIX}FSYNC") == "1",
    )


def serve(
    model_name: str,
    alias: str = "champion",
    host: str = "127.0.0.1",
    port: int = 5050,
    log_dir: Path = DEFAULT_LOG_DIR,
    workers: int = 1,
    *,
    allow_remote: bool = False,
    tracking_uri: str | None = None,
    fsync: bool = False,
    access_log: bool = True,
) -> None:
    """Run uvicorn. A non-loopback host is refused unless allow_remote=True: there is no auth."""
    if not is_loopback(host) and not allow_remote:
        message = (
            f"refusing to serve on {host!r}: not a loopback address, and this server has no "
            "authentication or TLS. Bind 127.0.0.1 (put a proxy in front), or pass allow_remote=True "
            "(--allow-remote) to expose it deliberately."
        )
        print(message, file=sys.stderr)
        raise RemoteBindRefused(message)
    import uvicorn

    if workers <= 1:
        app = create_app(model_name, alias, log_dir, tracking_uri=tracking_uri, fsync=fsync)
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
        return
    # Several processes: resolve the alias once here so that every worker serves the same version.
    import mlflow

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    version = mlflow.MlflowClient(tracking_uri=uri).get_model_version_by_alias(model_name, alias).version
    os.environ.update(
        {
            f"{ENV_PREFIX}MODEL": model_name,
            f"{ENV_PREFIX}ALIAS": alias,
            f"{ENV_PREFIX}VERSION": str(version),
            f"{ENV_PREFIX}LOG_DIR": str(Path(log_dir).absolute()),
            f"{ENV_PREFIX}FSYNC": "1" if fsync else "0",
            "MLFLOW_TRACKING_URI": uri,
        }
    )
    uvicorn.run(
        "components.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.serve", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registered model name, e.g. energy")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR)
    parser.add_argument("--fsync", action="store_true", help="fsync every inference-log line")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no auth!)")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    from components.config import quiet_environment

    quiet_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(
            args.model,
            args.alias,
            args.host,
            args.port,
            args.log_dir,
            args.workers,
            allow_remote=args.allow_remote,
            fsync=args.fsync,
            access_log=not args.no_access_log,
        )
    except RemoteBindRefused:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
