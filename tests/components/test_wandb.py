"""tracking.wandb=true: the energy demo's train stage mirrors its metrics to an offline W&B run.

The real stages run in-process on the demo profile shrunk to seconds (as tests/contract does), with W&B
pointed at a loopback port that counts connections: offline mode must not try it even once. MLflow keeps
the metrics (it is the run of record), and no secret from the environment reaches the W&B run's files.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from components.tracking import SECRET_KEY
from pipelines.registry import get_project

BUDGET_S = 60  # the whole test, on the 2-core CI machine
FAKE_KEY = "wandb-test-key-0123456789abcdef0123456789abcdef"  # 40+ characters, the shape of a real key
SHRINK = ["energy.train.max_epochs=1", "energy.data.demo_rows=1200"]  # one epoch: seconds, still logged


class ConnectionCounter:
    """A loopback TCP listener standing in for the W&B server: it counts the clients that reach it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def wandb_records(path: Path):
    """The protobuf records of an offline run's transaction log (run-<id>.wandb).

    wandb 0.31 ships no Python reader for it (wandb-core writes it): the file is LevelDB's log format
    (a 7-byte ":W&B" header, 32 KiB blocks, each record a 7-byte header + payload, split across blocks
    as FIRST/MIDDLE/LAST) holding wandb.proto Record messages, which is what `wandb sync` uploads.
    """
    from wandb.proto import wandb_internal_pb2

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, payload = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the block is padded
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    counter = ConnectionCounter()
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(key, raising=False)  # the default, not the developer's own settings, is under test
    monkeypatch.setenv("WANDB_BASE_URL", counter.url)  # any upload attempt would land here and be counted
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # present, as on a developer's machine: must not leak
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield counter
    counter.close()


def test_train_mirrors_metrics_to_an_offline_wandb_run(repo_root, tmp_path, store, wandb_env, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working directory stays in tmp_path
    project = get_project("energy")
    cfg = load_config("energy", project.section, repo_root / "params.yaml", "demo", [*SHRINK, "tracking.wandb=true"])
    assert cfg.tracking.wandb and cfg.tracking.wandb_project == "scifolio"
    paths = Paths.of("energy", tmp_path / "data")
    start = time.perf_counter()
    for stage in ("pull", "validate", "prepare", "train"):  # no tune: train falls back to params.yaml's values
        stages.run(project, cfg, stage, paths)
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET_S, f"pull to train with W&B took {elapsed:.0f} s (budget {BUDGET_S} s)"

    # exactly one W&B run, offline, in WANDB_DIR, and nothing tried the (fake) server
    runs = sorted((tmp_path / "wandb").glob("*run-*"))
    assert [r.name.split("-")[0] for r in runs] == ["offline"], runs
    assert wandb_env.connections == 0, f"offline W&B opened {wandb_env.connections} connection(s) to WANDB_BASE_URL"
    run_dir = runs[0]

    # the W&B run carries the metrics the MLflow run has, and points back at it
    run_id = json.loads((paths.model / "run.json").read_text())["run_id"]
    records = list(wandb_records(next(run_dir.glob("run-*.wandb"))))
    history: dict[str, list[float]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)  # "val/loss" is stored as ["val", "loss"]
                history.setdefault(key, []).append(json.loads(item.value_json))
    for key in ("train/loss", "val/loss"):
        mlflow_values = [m.value for m in store.get_metric_history(run_id, key)]
        assert mlflow_values, f"MLflow lost {key}: it must stay the run of record"
        assert history.get(key) == pytest.approx(mlflow_values), f"{key}: W&B {history.get(key)} vs MLflow"
    # finished when the fit ended (exit code 0), so the next Trainer in the process starts its own W&B run
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["mlflow.run_id"] == run_id and f"mlflow:{run_id}" in run.tags
    assert config["energy.train.max_epochs"] == 1  # the stage's params, as MLflow logged them
    assert not [k for k in config if SECRET_KEY.search(k)]

    # the API key stays in the environment: no file W&B wrote (run, logs, debug logs) holds it
    written = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert len(written) > 3  # the run's log, its files and wandb's debug logs are all searched
    leaks = [p for p in written if FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_wandb_is_off_by_default_and_never_imported(repo_root):
    """The default run mirrors nothing, and the CLI does not pay wandb's import time."""
    import subprocess
    import sys

    project = get_project("energy")
    cfg = load_config("energy", project.section, repo_root / "params.yaml", "demo", [])
    assert cfg.tracking.wandb is False
    code = (
        "import sys, pipelines.__main__, components.tracking, components.train, components.stages;"
        "sys.exit('wandb' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root, timeout=60).returncode == 0


def test_wandb_mode_follows_the_environment(monkeypatch):
    from components.tracking import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")  # the user's explicit choice wins
    assert wandb_mode() == "online"


def test_no_mirror_outside_a_wandb_stage_run():
    from components.tracking import wandb_logger

    assert wandb_logger("0" * 32) is None
