"""The energy chain against a real `mlflow server` (docs/tracking-server.md): MLFLOW_TRACKING_URI is the only change.

A server on 127.0.0.1 (SQLite backend, artifacts proxied by the server into a temporary folder), a
temporary copy of the repository, `python -m pipelines energy all` on the demo profile shrunk to one
trial/epoch with MLFLOW_TRACKING_URI=http://127.0.0.1:<port> added to the environment and nothing
else; then the runs, the champion and the model's files are read back through the server, and the
copy must hold no local store (./mlflow.db, ./mlruns).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COPY = ["components", "pipelines", "params.yaml", "pyproject.toml"]
SHRINK = [
    "energy.tune.n_trials=1",
    "energy.tune.max_epochs=1",
    "energy.train.max_epochs=1",
    "energy.data.demo_rows=1200",
]
LAUNCHER_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")  # MLflow 3 exports these


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free port; yields its URL; killed (its whole process group) afterwards."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
    ]
    with open(log, "wb") as out:  # the server's uvicorn workers inherit the file, not a pipe that could fill up
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)

    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # start-up imports + the SQLite migrations, on 2 shared cores
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer {url}/health within 180 s:\n{tail(log)}")
            time.sleep(1)
        yield {"url": url, "root": root, "log": log, "proc": proc}
    finally:
        stop()


@pytest.fixture(scope="module")
def chain(server, repo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("repo")
    for name in COPY:
        src, dst = repo_root / name, work / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["MLFLOW_TRACKING_URI"] = server["url"]  # the only change
    cmd = [sys.executable, "-m", "pipelines", "energy", "all", "--profile", "demo"]
    for override in SHRINK:
        cmd += ["--set", override]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed after {seconds:.0f} s:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        f"\n--- mlflow server log ---\n{tail(server['log'])}"
    )
    print(f"\nenergy all against {server['url']}: {seconds:.1f} s")
    import mlflow

    return {"dir": work, "proc": proc, "client": mlflow.MlflowClient(tracking_uri=server["url"]), **server}


def test_the_runs_are_on_the_server(chain):
    client = chain["client"]
    experiment = client.get_experiment_by_name("energy-demo")  # the demo profile's experiment
    assert experiment is not None, tail(chain["log"])
    runs = client.search_runs([experiment.experiment_id])
    stages = {r.data.tags.get("scifolio.stage") for r in runs}
    assert {"validate", "tune", "train"} <= stages, stages
    train = next(r for r in runs if r.data.tags.get("scifolio.stage") == "train")
    assert train.data.params["energy.train.max_epochs"] == "1"
    assert "test/mse" in train.data.metrics
    # the server proxies artifacts: the client never writes to a path of its own
    assert train.info.artifact_uri.startswith("mlflow-artifacts:/"), train.info.artifact_uri
    assert any(client.list_artifacts(train.info.run_id))


def test_the_champion_is_registered_on_the_server(chain):
    champion = chain["client"].get_model_version_by_alias("energy-demo", "champion")
    assert str(champion.version) == "1"
    assert champion.tags.get("gate.decision") == "promoted"


def test_the_model_downloads_and_predicts_through_the_server(chain, tmp_path):
    import mlflow
    from mlflow.models import Model

    client = chain["client"]
    champion = client.get_model_version_by_alias("energy-demo", "champion")
    assert champion.source.startswith("models:/m-"), champion.source  # MLflow 3: the version points at a logged model
    location = client.get_logged_model(champion.source.removeprefix("models:/")).artifact_location
    assert location.startswith("mlflow-artifacts:/"), location  # served by the server, not a local path
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=str(tmp_path), tracking_uri=chain["url"]
    )
    assert (Path(local) / "MLmodel").is_file(), sorted(p.name for p in Path(local).iterdir())
    # the files sit in the server's artifact store, nowhere else
    stored = [p for p in (chain["root"] / "artifacts").rglob("MLmodel")]
    assert stored, f"no MLmodel under the server's --artifacts-destination {chain['root'] / 'artifacts'}"

    example = Model.load(str(Path(local) / "MLmodel")).load_input_example(local)
    assert example is not None, "the registered model has no input example"
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(chain["url"]):  # restores the process-wide URI: later tests must not reach this server
        model = mlflow.pyfunc.load_model("models:/energy-demo@champion")
    forecast = model.predict(example)
    assert len(forecast) == 24  # the demo profile's horizon
    assert forecast.drop(columns="date", errors="ignore").notna().all().all()


def test_nothing_went_to_a_local_store(chain):
    work = chain["dir"]
    assert not (work / "mlflow.db").exists(), "a local sqlite store was created beside the server"
    assert not (work / "mlruns").exists(), sorted(str(p.relative_to(work)) for p in (work / "mlruns").rglob("*"))[:20]
    assert (work / "data/energy/registry/decision.json").is_file()
