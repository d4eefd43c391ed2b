"""Serve the deployed version of a registered model over REST, with an append-only inference log.

    python -m components.serve energy                      # models:/energy@champion on 127.0.0.1:5050
    python -m components.serve energy-demo --alias challenger --port 5051 --workers 2

Project-agnostic: any pyfunc in the MLflow registry, named as registered (`cfg.model_name`: `energy` for
the full profile, `energy-demo` for the demo one). `create_app` resolves `models:/<name>@<alias>` to
its concrete version ONCE at start and loads `models:/<name>/<version>`, so the model answering is
exactly the registered one, even if the alias moves while the server runs (restart to pick up a new
champion; every response and log line names the version that produced it).

Endpoints
    GET  /health       {"status": "ok", "model", "version", "alias", "data_version", "log_file"}
    GET  /metadata     the signature's inputs/outputs/params and the version's tags
    POST /invocations  MLflow's scoring protocol: {"dataframe_split": {"columns": [...], "data": [...]}}
                       or {"dataframe_records": [{...}, ...]} (optionally "params": {...}), ->
                       {"predictions": [records], "model_version": "<v>"}; header X-Request-ID.
                       A payload that is not naturally a table (text, a sequence, a file, a generation
                       request) is one row per item: components/payload.py documents the columns.

Errors are JSON `{"error": "<message>"}`, never a traceback:
    400  body not UTF-8 / not JSON, JSON nested deeper than MAX_JSON_DEPTH (refused by a scan BEFORE
         parsing: a body of 100,000 "[" would otherwise exhaust the parser's recursion), top-level value
         not an object, not exactly one of dataframe_split / dataframe_records, unknown keys, a
         payload that is not a table
    413  body larger than MAX_BODY_BYTES
    415  Content-Type is not application/json: a web page can POST text/plain or form-encoded bodies to
         127.0.0.1 without a CORS preflight, so only a request a page cannot send blind is served
    422  a well-formed table the model refuses: empty, missing a required column; a non-finite number
         (NaN, Infinity, -Infinity, or a literal such as 1e400 that overflows a double; or a value that
         becomes infinite once cast to the signature's type, e.g. 1e308 in a float32 column); a number
         in a datetime column (timestamps are ISO 8601 strings); a value that does not convert to the
         signature's type (MLflow's schema enforcement, MlflowException); the model's own ValueError
         (e.g. pipelines.energy.pyfunc.InputError, components.payload.PayloadError); a prediction with
         a non-finite number (JSON cannot carry it: it would reach the client as a silent null).
         Each message names the column and the row (0-based) where there is one.
    500  anything else (a bug, not the client's fault): the server logs the traceback and keeps serving

The inference log (components/inference_log.py: format, caps, concurrency guarantees): every POST
/invocations (accepted or rejected) appends ONE JSON line to `<log_dir>/<name>/v<version>.jsonl`:
    {"timestamp": UTC ISO-8601, "request_id": uuid4, "client_request_id": X-Request-ID sent by the
     client or null, "model": name, "version": v, "alias": alias, "status": HTTP status,
     "latency_ms": request received -> response ready (parsing + validation + predict; the log
     write itself is excluded), "inputs": the request's DataFrame as records (after the signature's
     type casts; timestamps as ISO strings) or null if the body was not a table, "outputs": the
     prediction records or null, "error": the message or null, "body_bytes": request size}
A table of more than MAX_LOGGED_CELLS cells is logged as a summary; a large cell (a base64 image, an
image-sized nested list) as a capped summary, its full content kept once under `<log_dir>/<name>/blobs/`
unless the server runs with `--no-blobs`. A rejected body that is not a table is logged by size plus
its first BODY_EXCERPT_CHARS characters.
"""

import argparse
import datetime as dt
import ipaddress
import json
import logging
import math
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from components.inference_log import (  # noqa: F401  (re-exported: older callers import them from here)
    DEFAULT_LOG_DIR,
    MAX_LOGGED_CELLS,
    SUMMARY_ROWS,
    CellCap,
    append_line,
    append_record,
    blob_dir,
    body_excerpt,
    encode_record,
    frame_records,
    log_path,
    loggable,
    loggable_outputs,
    prediction_records,
    read_log,
    summarize_frame,
)

log = logging.getLogger("scifolio.serve")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # components.config.TrackingConfig's default
MAX_BODY_BYTES = 32 * 1024 * 1024  # larger requests get 413 without being parsed
MAX_JSON_DEPTH = 32  # a table is 4 levels deep ({"dataframe_split": {"data": [[cell]]}}); cells may nest a little
BODY_EXCERPT_CHARS = 256  # of a rejected body that is not a table
MAX_ERROR_CHARS = 2_000  # error messages are cut to this length
FORMATS = ("dataframe_split", "dataframe_records")
ALLOWED_KEYS = (*FORMATS, "params")
JSON_MEDIA_TYPE = "application/json"
ENV_PREFIX = "SCIFOLIO_SERVE_"  # how `serve(workers>1)` hands its settings to uvicorn's workers


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


def content_type_error(content_type: str | None) -> str | None:
    """None when the Content-Type is application/json (parameters such as charset allowed), else the message."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE:
        return None
    got = repr(content_type) if content_type else "no Content-Type"
    return f"the body must be sent with Content-Type: {JSON_MEDIA_TYPE}; got {got}"


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included (unrolled: linear)


def json_depth(body: bytes) -> int:
    """The deepest nesting of [ and { in a JSON text, strings ignored; linear, no recursion, no parse."""
    import numpy as np

    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:  # cannot be deeper than its brackets
        return body.count(b"[") + body.count(b"{")
    structure = _JSON_STRING.sub(b"", body)
    table = np.zeros(256, dtype=np.int8)
    table[[ord("["), ord("{")]] = 1
    table[[ord("]"), ord("}")]] = -1
    steps = table[np.frombuffer(structure, dtype=np.uint8)]
    steps = steps[steps != 0].astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _non_finite_cell(payload: dict, key: str, params) -> str | None:
    """Where the first non-finite number of a parsed body is: 'column 'x', row 3' (or a params key)."""

    def bad(value, depth=0) -> bool:
        if isinstance(value, float):
            return not math.isfinite(value)
        if depth < MAX_JSON_DEPTH and isinstance(value, list):
            return any(bad(v, depth + 1) for v in value)
        if depth < MAX_JSON_DEPTH and isinstance(value, dict):
            return any(bad(v, depth + 1) for v in value.values())
        return False

    table = payload.get(key)
    if key == "dataframe_split" and isinstance(table, dict) and isinstance(table.get("data"), list):
        columns = table.get("columns") if isinstance(table.get("columns"), list) else []
        for row, values in enumerate(table["data"]):
            cells = values if isinstance(values, list) else [values]
            for i, value in enumerate(cells):
                if bad(value):
                    name = columns[i] if i < len(columns) else i
                    return f"column {name!r}, row {row}: {value!r}"
    elif key == "dataframe_records" and isinstance(table, list):
        for row, record in enumerate(table):
            items = record.items() if isinstance(record, dict) else [("?", record)]
            for name, value in items:
                if bad(value):
                    return f"column {name!r}, row {row}: {value!r}"
    if isinstance(params, dict):
        for name, value in params.items():
            if bad(value):
                return f"params {name!r}: {value!r}"
    return None


def _datetime_number_cell(payload: dict, key: str, input_schema) -> str | None:
    """A number sent in a datetime column (pandas would read it as nanoseconds after 1970)."""
    if input_schema is None or not input_schema.has_input_names():
        return None
    names = {spec.name for spec in input_schema.inputs if getattr(spec.type, "name", "") == "datetime"}
    if not names:
        return None
    table = payload.get(key)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))

    if key == "dataframe_split" and isinstance(table, dict) and isinstance(table.get("data"), list):
        columns = table.get("columns") if isinstance(table.get("columns"), list) else []
        if any(not isinstance(values, list) or len(values) != len(columns) for values in table["data"]):
            return None  # not a table: MLflow's parser says so (400)
        index = [i for i, c in enumerate(columns) if c in names]
        for row, values in enumerate(table["data"]):
            for i in index:
                if isinstance(values, list) and i < len(values) and number(values[i]):
                    return f"column {columns[i]!r}, row {row}: {values[i]!r}"
    elif key == "dataframe_records" and isinstance(table, list):
        for row, record in enumerate(table):
            for name in names:
                if isinstance(record, dict) and number(record.get(name)):
                    return f"column {name!r}, row {row}: {record[name]!r}"
    return None


def parse_json(body: bytes) -> tuple[Any, bool]:
    """Bytes -> (the parsed JSON value, whether it holds a non-finite number), refusing (400) what is not
    UTF-8 JSON or is nested deeper than MAX_JSON_DEPTH (checked by a scan before parsing)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the body is not UTF-8 text: {err}") from None
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(
            400, f"the body nests arrays/objects {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted"
        )
    seen = []

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity: Python's json accepts them, JSON does not
        seen.append(name)
        return float(name.replace("Infinity", "inf"))

    def real(literal: str) -> float:  # 1e400 overflows to inf
        value = float(literal)
        if not math.isfinite(value):
            seen.append(literal)
        return value

    try:
        return json.loads(text, parse_constant=constant, parse_float=real), bool(seen)
    except ValueError as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None
    except RecursionError:  # the depth scan should have caught it; belt and braces
        raise RequestError(400, "the body is nested too deeply to parse") from None


def parse_body(body: bytes, input_schema=None):
    """Request body -> (DataFrame, params), or RequestError(400/422) saying what is wrong."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.proto_json_utils import MlflowFailedTypeConversion, dataframe_from_parsed_json

    from components.payload import first_non_finite

    payload, non_finite = parse_json(body)
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
    if non_finite:
        where = _non_finite_cell(payload, key, params) or "a value"
        raise RequestError(422, f"{where} is not a finite number (NaN, Infinity and overflowing numbers are refused)")
    where = _datetime_number_cell(payload, key, input_schema)
    if where:
        raise RequestError(
            422, f"{where} is a number; a datetime column takes ISO 8601 strings such as '2016-07-01T00:00:00'"
        )
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
    cast = first_non_finite(frame)  # e.g. 1e308 sent to a float32 column is inf after the signature's cast
    if cast:
        column, row, value = cast
        raise RequestError(
            422, f"column {column!r}, row {row}: {value} after conversion to the signature's type {frame[column].dtype}"
        )
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


def check_predictions(predictions) -> None:
    """A non-finite number in the output would reach the client as null: refuse it, naming where."""
    import numpy as np
    import pandas as pd

    from components.payload import first_non_finite

    if isinstance(predictions, pd.Series):
        predictions = predictions.to_frame("prediction")
    if isinstance(predictions, pd.DataFrame):
        bad = first_non_finite(predictions, allow_missing=False)
        if bad:
            column, row, value = bad
            raise RequestError(
                422,
                f"the model's output is {value} at column {column!r}, row {row}: the input is outside what the "
                "model can answer (check its range)",
            )
    elif isinstance(predictions, np.ndarray) and predictions.dtype.kind == "f" and not np.isfinite(predictions).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(predictions))[0])
        raise RequestError(422, f"the model's output is not finite at index {list(index)}")


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
        keep_blobs: bool = True,
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
        omit = (self.model.metadata.metadata or {}).get("inference_log_omit", [])  # register.LOG_OMIT
        self.cell_cap = CellCap(blobs=blob_dir(self.log_file) if keep_blobs else None, omit=frozenset(omit))
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
            check_predictions(predictions)
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
        """Predict (unless `status` is already decided, e.g. 413, 415), log one line, return the answer."""
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
            if frame is not None:
                record["inputs"] = loggable(frame, self.max_logged_cells, self.cell_cap)
            else:
                record["inputs"] = body_excerpt(body, BODY_EXCERPT_CHARS)
            record["outputs"] = loggable_outputs(outputs, self.max_logged_cells, self.cell_cap)
            append_line(self.log_file, encode_record(record), self.fsync)
        except Exception:  # the answer still goes out; /health counts what the log missed
            self.log_errors += 1
            log.exception("%s: could not append request %s", self.log_file, request_id)
        self.served += 1
        return status, payload, request_id


def create_app(
    model_name: str,
    alias: str = "champion",
    log_dir: Path = DEFAULT_LOG_DIR,
    *,
    version: str | int | None = None,
    tracking_uri: str | None = None,
    fsync: bool = False,
    max_logged_cells: int = MAX_LOGGED_CELLS,
    keep_blobs: bool = True,
):
    """The FastAPI app serving `models:/<model_name>@<alias>`, resolved to its version now, once.

    `version` pins a version (what `serve(workers>1)` passes so that every worker serves the one
    version the parent resolved); `tracking_uri` defaults to $MLFLOW_TRACKING_URI, else the
    project's embedded store sqlite:///mlflow.db; `keep_blobs` False drops the full content of capped
    log cells (the monitor then cannot use those records).
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
        keep_blobs,
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
        if status is None:
            error = content_type_error(request.headers.get("content-type"))
            status = 415 if error else None
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
        keep_blobs=env.get(f"{ENV_PREFIX}BLOBS", "1") == "1",
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
    keep_blobs: bool = True,
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
        app = create_app(model_name, alias, log_dir, tracking_uri=tracking_uri, fsync=fsync, keep_blobs=keep_blobs)
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
            f"{ENV_PREFIX}BLOBS": "1" if keep_blobs else "0",
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
    parser.add_argument("model", help="registered model name (cfg.model_name), e.g. energy or energy-demo")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR)
    parser.add_argument("--fsync", action="store_true", help="fsync every inference-log line")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no auth!)")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--no-blobs", action="store_true", help="do not keep the full content of capped log cells")
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
            keep_blobs=not args.no_blobs,
        )
    except RemoteBindRefused:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
