"""Shared fixtures: the real data samples in ../shared, offline environment, the repo root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.config import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the real data samples must sit in ../shared beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def etth1(shared_data) -> Path:
    return shared_data / "energy" / "ETTh1.csv"


@pytest.fixture(autouse=True)
def _isolate_mlflow_env():
    """MLflow 3 exports MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID into os.environ when a test sets
    them; restore the environment so no test's store or experiment leaks into the next test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An MLflow client on a fresh SQLite store in tmp_path, which is also where stages log (the env var)."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


@pytest.fixture
def loopback():
    """serve(folder) -> "http://127.0.0.1:<port>": a real HTTP mirror of a local folder, for pull tests."""
    import functools
    import http.server
    import threading

    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
