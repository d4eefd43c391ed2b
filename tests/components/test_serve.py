"""components/serve.py against a real demo energy model registered in a temporary MLflow store.

The store is built once for the module (pull .. register on a tiny demo profile, ~20 s); the demo
profile registers `energy-demo` (cfg.model_name). The unit cases use FastAPI's TestClient, among them
every refusal (415, 400 for deep nesting, 422 for non-finite numbers, numeric/duplicated/irregular
timestamps and implausible values); the load test runs ONE real uvicorn server on 127.0.0.1 (a free
port) and sends a bounded number of requests to it; the multi-process test appends to one log file
from two processes at once (components/inference_log.py).
"""

import json
import multiprocessing
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from components import inference_log
from components import serve as serve_module
from components.inference_log import append_record, loggable, read_log
from components.serve import RemoteBindRefused, create_app, serve

OVERRIDES = ["energy.train.max_epochs=1", "energy.data.demo_rows=1200"]
SEQ_LEN, HORIZON = 96, 24  # the demo profile's window
COLUMNS = ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
MODEL = "energy-demo"  # cfg.model_name of the demo profile


@pytest.fixture(scope="module")
def store(repo_root, tmp_path_factory):
    """A temporary MLflow store holding energy v1 as champion; artifacts stay under the temp dir."""
    import mlflow

    from components import stages
    from components.config import load_config
    from components.project import Paths
    from pipelines.energy.project import ENERGY

    tmp = tmp_path_factory.mktemp("serve")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{tmp}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    cfg = load_config("energy", ENERGY.section, repo_root / "params.yaml", "demo", OVERRIDES)
    assert cfg.model_name == MODEL
    mlflow.create_experiment(MODEL, artifact_location=(tmp / "artifacts").as_uri())  # not ./mlruns
    paths = Paths.of("energy", tmp / "data")
    for stage in ("pull", "validate", "prepare", "train", "evaluate", "register"):
        stages.run(ENERGY, cfg, stage, paths)
    history = pd.read_csv(paths.raw / "demo.csv")
    yield {"dir": tmp, "uri": uri, "history": history, "client": mlflow.MlflowClient(uri)}
    mlflow.set_tracking_uri(saved)  # None unsets it: no later test module sees this store
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="module")
def app(store):
    return create_app(MODEL, log_dir=store["dir"] / "logs")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def window(history: pd.DataFrame, start: int = 100, rows: int = SEQ_LEN) -> pd.DataFrame:
    return history.iloc[start : start + rows].reset_index(drop=True)


def split_body(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def log_file(app) -> Path:
    return app.state.service.log_file


def lines(app) -> list[dict]:
    path = log_file(app)
    return read_log(path) if path.exists() else []


def assert_still_serving(client, store):
    assert client.get("/health").json()["status"] == "ok"
    ok = client.post("/invocations", json=split_body(window(store["history"], 300)))
    assert ok.status_code == 200, ok.text


# ---- unit cases (TestClient) ----------------------------------------------------------------


def test_health_reports_the_champion_version(client, store):
    champion = store["client"].get_model_version_by_alias(MODEL, "champion")
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert (health["model"], health["version"], health["alias"]) == (MODEL, str(champion.version), "champion")
    assert health["data_version"] == champion.tags["scifolio.data_version"]
    assert health["data_version"] == (store["dir"] / "data/energy/validated/DATA_VERSION").read_text().strip()


def test_metadata_has_the_signature_and_tags(client):
    meta = client.get("/metadata").json()
    assert [c["name"] for c in meta["signature"]["inputs"]] == COLUMNS
    assert [c["name"] for c in meta["signature"]["outputs"]] == COLUMNS
    assert meta["signature"]["inputs"][0]["type"] == "datetime"
    assert meta["tags"]["gate.decision"] == "promoted"
    assert meta["model_uri"] == f"models:/{MODEL}/{meta['version']}"


def test_valid_request_forecasts_and_logs_one_line(client, app, store):
    history = window(store["history"])
    before = len(lines(app))
    response = client.post("/invocations", json=split_body(history), headers={"X-Request-ID": "valid-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == app.state.service.version
    forecast = pd.DataFrame(body["predictions"])
    assert list(forecast.columns) == COLUMNS and len(forecast) == HORIZON
    first = pd.Timestamp(forecast["date"].iloc[0])
    assert first == pd.Timestamp(history["date"].iloc[-1]) + pd.Timedelta(hours=1)
    assert forecast.drop(columns="date").notna().all().all()

    records = lines(app)
    assert len(records) == before + 1
    line = records[-1]
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert str(uuid.UUID(line["request_id"])) == line["request_id"]
    assert line["client_request_id"] == "valid-1"
    assert (line["model"], line["version"], line["status"]) == (MODEL, app.state.service.version, 200)
    assert pd.Timestamp(line["timestamp"]).utcoffset() == pd.Timedelta(0)
    assert line["latency_ms"] > 0 and line["error"] is None
    assert len(line["inputs"]) == SEQ_LEN and line["inputs"][0]["date"] == pd.Timestamp(history["date"][0]).isoformat()
    assert line["inputs"][5]["OT"] == pytest.approx(history["OT"][5])
    assert line["outputs"] == body["predictions"]


def test_dataframe_records_are_accepted(client, store):
    history = window(store["history"], 200)
    response = client.post("/invocations", json={"dataframe_records": json.loads(history.to_json(orient="records"))})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == HORIZON


def _non_numeric(history):
    bad = history.astype(object)
    bad.loc[3, "HULL"] = "abc"
    return split_body(bad)


BAD_REQUESTS = {
    "not json": (
        {"content": b'{"dataframe_split": [1, 2', "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    "no dataframe key": ({"json": {"instances": [[1, 2]]}}, 400, "exactly one of"),
    "empty object": ({"json": {}}, 400, "exactly one of"),
    "both formats": ({"json": {"dataframe_split": {"data": []}, "dataframe_records": []}}, 400, "exactly one of"),
    "top-level list": ({"json": [{"date": "2016-07-01 00:00:00"}]}, 400, "JSON object"),
    "top-level number": ({"json": 3}, 400, "JSON object"),
    "split is a list": ({"json": {"dataframe_split": [[1, 2]]}}, 400, "must be a dictionary"),
    "records is an object": ({"json": {"dataframe_records": {"HUFL": 1}}}, 400, "list of records"),
    "ragged rows": (
        {"json": {"dataframe_split": {"columns": ["date", "HUFL"], "data": [[1], [1, 2, 3]]}}},
        400,
        "split",
    ),
    "missing column": (lambda h: {"json": split_body(h.drop(columns="OT"))}, 422, "missing required column(s) ['OT']"),
    "non-numeric value": (lambda h: {"json": _non_numeric(h)}, 422, "HULL"),
    "bad timestamp": (lambda h: {"json": split_body(h.assign(date=["x"] * len(h)))}, 422, "date"),
    "too few rows": (lambda h: {"json": split_body(h.iloc[:10])}, 422, "seq_len=96"),
    "empty dataframe": ({"json": {"dataframe_split": {"columns": COLUMNS, "data": []}}}, 422, "empty dataframe"),
    "empty records": ({"json": {"dataframe_records": []}}, 422, "empty dataframe"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_a_4xx_with_a_message_and_is_logged(case, client, app, store):
    request, status, fragment = BAD_REQUESTS[case]
    if callable(request):
        request = request(window(store["history"]))
    before = len(lines(app))
    response = client.post("/invocations", **request)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert fragment in message
    assert len(message) <= serve_module.MAX_ERROR_CHARS and "Traceback" not in message
    line = lines(app)[before]
    assert line["status"] == status and line["error"] == message and line["outputs"] is None
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["inputs"] is not None  # the table, or an excerpt of a body that was not one
    assert_still_serving(client, store)


def _split_text(frame: pd.DataFrame, row: int, column: str, token: str) -> bytes:
    """A dataframe_split body with one cell replaced by a raw JSON token (NaN, Infinity, 1e400 ...)."""
    body = split_body(frame)
    marker = "__CELL__"
    body["dataframe_split"]["data"][row][body["dataframe_split"]["columns"].index(column)] = marker
    return json.dumps(body).replace(f'"{marker}"', token).encode()


def _records_text(frame: pd.DataFrame, row: int, column: str, token: str) -> bytes:
    records = json.loads(frame.to_json(orient="records"))
    records[row][column] = "__CELL__"
    return json.dumps({"dataframe_records": records}).replace('"__CELL__"', token).encode()


JSON = {"content-type": "application/json"}


def _with(frame, column, values):
    return frame.assign(**{column: values})


REFUSALS = {
    # Content-Type: what a web page can send to 127.0.0.1 without a CORS preflight
    "text/plain body": (
        lambda h: {"json": None, "content": json.dumps(split_body(h)), "headers": {"content-type": "text/plain"}},
        415,
        ["Content-Type", "text/plain"],
    ),
    "form-encoded body": (
        lambda h: {"content": "dataframe_split=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        ["application/json"],
    ),
    "no content type": (lambda h: {"content": json.dumps(split_body(h)).encode()}, 415, ["no Content-Type"]),
    # non-finite numbers, named by column and row
    "Infinity": (
        lambda h: {"content": _split_text(h, 3, "OT", "Infinity"), "headers": JSON},
        422,
        ["column 'OT', row 3", "not a finite number"],
    ),
    "-Infinity": (
        lambda h: {"content": _split_text(h, 0, "HUFL", "-Infinity"), "headers": JSON},
        422,
        ["column 'HUFL', row 0"],
    ),
    "NaN": (lambda h: {"content": _split_text(h, 5, "HULL", "NaN"), "headers": JSON}, 422, ["column 'HULL', row 5"]),
    "1e400 overflows a double": (
        lambda h: {"content": _split_text(h, 7, "MUFL", "1e400"), "headers": JSON},
        422,
        ["column 'MUFL', row 7"],
    ),
    "Infinity in records": (
        lambda h: {"content": _records_text(h, 2, "LULL", "Infinity"), "headers": JSON},
        422,
        ["column 'LULL', row 2"],
    ),
    "1e308 is inf as float32": (
        lambda h: {"content": _split_text(h, 4, "OT", "1e308"), "headers": JSON},
        422,
        ["column 'OT', row 4", "float32"],
    ),
    # nesting depth: refused by the scan before the parser recurses
    "100,000 nested arrays": (lambda h: {"content": b"[" * 100_000, "headers": JSON}, 400, ["levels deep"]),
    "deep inside a table": (
        lambda h: {"content": b'{"dataframe_split": {"data": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "headers": JSON},
        400,
        ["levels deep"],
    ),
    # timestamps: datetime-like, unique, regular
    "integer timestamps": (
        lambda h: {"json": split_body(_with(h, "date", list(range(len(h)))))},
        422,
        ["column 'date', row 0", "is a number"],
    ),
    "integer timestamps in records": (
        lambda h: {
            "json": {"dataframe_records": json.loads(_with(h, "date", list(range(len(h)))).to_json(orient="records"))}
        },
        422,
        ["column 'date', row 0"],
    ),
    "duplicated timestamp": (
        lambda h: {"json": split_body(_with(h, "date", h["date"].where(h.index != 10, h["date"][9])))},
        422,
        ["column 'date', row 10", "duplicates row 9"],
    ),
    "irregular timestamps": (
        lambda h: {
            "json": split_body(
                pd.concat([h, h.iloc[:1].assign(date="2099-01-01 00:00:00")]).drop(index=50).reset_index(drop=True)
            )
        },
        422,
        ["column 'date', row 50", "after row 49", "3600"],
    ),
    "oldest last": (
        lambda h: {"json": split_body(h.iloc[::-1].reset_index(drop=True))},
        422,
        ["column 'date', row 1", "earlier"],
    ),
    # the training data's plausible ranges (pipelines/energy/schema.py)
    "implausible value": (
        lambda h: {"json": split_body(_with(h, "OT", h["OT"].where(h.index != 8, 500.0)))},
        422,
        ["column 'OT', row 8", "plausible range"],
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_requests_get_a_4xx_naming_the_problem_and_are_logged(case, client, app, store):
    build, status, fragments = REFUSALS[case]
    request = {k: v for k, v in build(window(store["history"])).items() if v is not None}
    before = len(lines(app))
    response = client.post("/invocations", **request)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    line = lines(app)[before]
    assert line["status"] == status and line["error"] == message and line["outputs"] is None
    assert_still_serving(client, store)


def test_charset_parameter_is_accepted(client, store):
    body = json.dumps(split_body(window(store["history"]))).encode()
    response = client.post("/invocations", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text


def test_a_non_finite_prediction_is_refused_not_sent_as_null(client, app, store, monkeypatch):
    forecast = client.post("/invocations", json=split_body(window(store["history"]))).json()["predictions"]
    broken = pd.DataFrame(forecast).assign(OT=float("inf"))
    monkeypatch.setattr(app.state.service.model, "predict", lambda *a, **k: broken)
    response = client.post("/invocations", json=split_body(window(store["history"])))
    assert response.status_code == 422 and "output is inf at column 'OT', row 0" in response.json()["error"]


def test_the_pyfunc_itself_refuses_integer_and_irregular_timestamps(store):
    """Called directly (no MLflow schema casts), as the monitor and the gate call it."""
    from components.register import load_python_model
    from pipelines.energy.pyfunc import InputError

    model = load_python_model(f"models:/{MODEL}/1")
    history = window(store["history"])
    assert len(model.predict(None, history)) == HORIZON  # date strings: accepted
    with pytest.raises(InputError, match=r"column 'date', row 0: 0 is a number"):
        model.predict(None, history.assign(date=range(len(history))))
    stamps = pd.to_datetime(history["date"])
    with pytest.raises(InputError, match=r"column 'date', row 20: .* after row 19"):
        model.predict(None, history.assign(date=stamps.where(history.index < 20, stamps + pd.Timedelta(minutes=30))))
    with pytest.raises(InputError, match=r"column 'HUFL', row 2: .*float32"):
        model.predict(None, history.assign(HUFL=history["HUFL"].where(history.index != 2, 1e308)))


def test_json_depth_scan_ignores_brackets_inside_strings():
    assert serve_module.json_depth(b'{"a": [[1, 2], {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}') == 3
    assert serve_module.json_depth(b"[" * 40 + b"]" * 40) == 40
    assert serve_module.json_depth(b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]') == 1


def test_parse_body_refuses_values_infinite_after_the_signature_cast():
    from mlflow.types import ColSpec, Schema

    schema = Schema([ColSpec("float", "x"), ColSpec("double", "y")])
    body = json.dumps({"dataframe_split": {"columns": ["x", "y"], "data": [[1.0, 1e308], [1e308, 2.0]]}}).encode()
    with pytest.raises(serve_module.RequestError, match=r"column 'x', row 1: inf after conversion") as err:
        serve_module.parse_body(body, schema)
    assert err.value.status == 422


def test_too_large_body_is_413(client, app, store, monkeypatch):
    monkeypatch.setattr(serve_module, "MAX_BODY_BYTES", 1000)
    response = client.post("/invocations", json=split_body(window(store["history"])))
    assert response.status_code == 413 and "larger than 1000 bytes" in response.json()["error"]
    assert lines(app)[-1]["status"] == 413
    monkeypatch.undo()
    assert_still_serving(client, store)


def test_unexpected_error_is_500_and_the_server_keeps_serving(client, app, store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("weights went missing")

    monkeypatch.setattr(app.state.service.model, "predict", broken)
    response = client.post("/invocations", json=split_body(window(store["history"])))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: RuntimeError: weights went missing"}
    assert lines(app)[-1]["status"] == 500
    monkeypatch.undo()
    assert_still_serving(client, store)


def test_large_payloads_are_logged_as_a_summary(client, app, store, monkeypatch):
    monkeypatch.setattr(app.state.service, "max_logged_cells", 100)
    history = window(store["history"], 0, 500)
    response = client.post("/invocations", json=split_body(history))
    assert response.status_code == 200
    logged = lines(app)[-1]["inputs"]
    assert logged["summary"] is True and logged["rows"] == 500 and logged["columns"] == COLUMNS
    assert len(logged["head"]) == len(logged["tail"]) == inference_log.SUMMARY_ROWS
    assert logged["stats"]["OT"]["mean"] == pytest.approx(history["OT"].mean())
    assert lines(app)[-1]["outputs"]["summary"] is True  # 24 x 8 = 192 cells > 100
    assert loggable(history.iloc[:5], max_cells=100)[0]["OT"] == pytest.approx(history["OT"][0])


def test_serve_refuses_a_non_loopback_host(capsys):
    with pytest.raises(RemoteBindRefused):
        serve("energy", host="0.0.0.0")
    assert "not a loopback address" in capsys.readouterr().err
    assert serve_module.is_loopback("127.0.0.1") and serve_module.is_loopback("::1")
    assert serve_module.is_loopback("localhost") and not serve_module.is_loopback("192.168.1.10")


def test_the_served_version_is_pinned_at_start(app, store):
    """Moving the alias does not change what a running server serves; a new server follows it."""
    import mlflow

    registry = store["client"]
    v1 = registry.get_model_version_by_alias(MODEL, "champion")
    v2 = mlflow.register_model(f"models:/{MODEL}/{v1.version}", MODEL)
    try:
        registry.set_registered_model_alias(MODEL, "champion", v2.version)
        assert app.state.service.version == str(v1.version)
        fresh = create_app(MODEL, log_dir=store["dir"] / "logs-v2")
        assert fresh.state.service.version == str(v2.version)
        assert fresh.state.service.log_file.name == f"v{v2.version}.jsonl"
        pinned = create_app(MODEL, log_dir=store["dir"] / "logs-v2", version=v1.version)
        assert pinned.state.service.version == str(v1.version)
    finally:
        registry.set_registered_model_alias(MODEL, "champion", v1.version)


# ---- one real uvicorn server: concurrent load ------------------------------------------------


class BackgroundServer:
    """uvicorn in a thread on 127.0.0.1, on a port the OS picked."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def test_concurrent_requests_are_each_logged_exactly_once(store):
    import requests

    threads, per_thread, deadline_s = 8, 25, 60.0
    app = create_app(MODEL, log_dir=store["dir"] / "load-logs")
    history = store["history"]
    good = [json.dumps(split_body(window(history, 50 + 7 * i))) for i in range(threads)]
    bad = json.dumps(split_body(window(history).drop(columns="OT")))  # every 5th request: a 422
    results, errors = [], []
    stop_at = time.monotonic() + deadline_s

    def worker(t: int, base: str):
        with requests.Session() as session:
            for i in range(per_thread):
                if time.monotonic() > stop_at:
                    return
                marker = f"load-{t}-{i}"
                payload = bad if i % 5 == 4 else good[t]
                start = time.perf_counter()
                try:
                    r = session.post(
                        f"{base}/invocations",
                        data=payload,
                        timeout=30,
                        headers={"Content-Type": "application/json", "X-Request-ID": marker},
                    )
                except requests.RequestException as err:
                    errors.append(f"{marker}: {err}")
                    continue
                results.append((marker, r.status_code, r.headers.get("X-Request-ID"), time.perf_counter() - start))

    with BackgroundServer(app) as base:
        assert requests.get(f"{base}/health", timeout=10).json()["version"] == app.state.service.version
        requests.post(
            f"{base}/invocations",
            data=good[0],
            timeout=30,
            headers={"Content-Type": "application/json", "X-Request-ID": "warm-up"},
        )
        start = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(t, base)) for t in range(threads)]
        for p in pool:
            p.start()
        for p in pool:
            p.join(timeout=deadline_s + 30)
        elapsed = time.perf_counter() - start
        assert requests.get(f"{base}/health", timeout=10).status_code == 200  # still up

    assert not errors, errors[:5]
    assert len(results) == threads * per_thread, "the load did not finish within its time bound"
    latencies = sorted(r[3] for r in results)
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"\nserve load on 127.0.0.1: {len(results)} requests ({threads} threads x {per_thread}) in "
        f"{elapsed:.2f} s = {len(results) / elapsed:.1f} req/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )

    expected = {marker: status for marker, status, _, _ in results}
    assert sorted(set(expected.values())) == [200, 422]
    records = read_log(log_file(app))  # raises if any line is not JSON (interleaved)
    by_marker = [r for r in records if (r["client_request_id"] or "").startswith("load-")]
    assert len(by_marker) == len(results)
    assert len({r["client_request_id"] for r in by_marker}) == len(results)  # each exactly once
    assert {r["client_request_id"]: r["status"] for r in by_marker} == expected
    assert {r["request_id"] for r in by_marker} == {server_id for _, _, server_id, _ in results}
    assert all(len(r["inputs"]) == SEQ_LEN for r in by_marker)
    assert all(len(r["outputs"]) == HORIZON for r in by_marker if r["status"] == 200)
    assert len(records) == len(results) + 1  # + the warm-up request


# ---- several processes appending to one file -------------------------------------------------


def _write_many(path: str, writer: int, count: int, start) -> None:
    start.wait(60)  # all three writers begin together
    padding = "x" * (8192 + 1000 * writer)  # lines longer than a page: a torn write would show
    for i in range(count):
        append_record(Path(path), {"writer": writer, "i": i, "padding": padding})


def test_two_processes_appending_lose_no_line(tmp_path):
    path = tmp_path / "shared.jsonl"
    count = 1500
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_write_many, args=(str(path), w, count, start)) for w in (1, 2)]
    for p in procs:
        p.start()
    start.wait(60)
    for i in range(count):  # this process writes too, through the same function, at the same time
        append_record(path, {"writer": 0, "i": i, "padding": ""})
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = read_log(path)
    assert len(records) == 3 * count
    for writer in (0, 1, 2):
        assert sorted(r["i"] for r in records if r["writer"] == writer) == list(range(count))
    assert path.read_bytes().count(b"\n") == 3 * count
