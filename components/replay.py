"""Replay real data to a served model and measure whether the monitor flags it.

    python -m pipelines energy replay --stream station            # one shifted replay, one drift check
    python -m pipelines energy replay --stream unshifted --replays 20

Each replay sends `items` items of one stream (the project's `replay_requests`, one DataFrame per
item: a history window, a one-row image request; streams `unshifted` and its shifts) to the server over HTTP, tagged with an X-Request-ID prefix of its own, then runs the
monitor on exactly those records of the server's inference log. Over many replays:
detection power = share of shifted replays flagged, false-alarm rate = share of unshifted ones flagged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd


@dataclasses.dataclass
class ReplayResult:
    stream: str
    replay: int
    requests: int
    items: int
    failed: int  # non-200 answers
    drift: bool
    reasons: list[str]
    seconds: float


@contextlib.contextmanager
def served(project: str, log_dir: Path, port: int | None = None, timeout_s: float = 180):
    """The real server (`python -m pipelines <project> serve`) on a loopback port; yields its URL."""
    import requests

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "pipelines", project, "serve", "--port", str(port), "--log-dir", str(log_dir)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited {server.returncode}: {server.stderr.read()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{project} server did not answer {url}/health within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def post(session, url: str, request: pd.DataFrame, request_id: str) -> int:
    body = {"dataframe_split": json.loads(request.to_json(orient="split", index=False, date_format="iso"))}
    response = session.post(f"{url}/invocations", json=body, headers={"X-Request-ID": request_id}, timeout=120)
    return response.status_code


def server_info(url: str) -> dict:
    import requests

    health = requests.get(f"{url}/health", timeout=10)
    health.raise_for_status()
    return health.json()


def run_replays(
    project,
    cfg,
    paths,
    url: str,
    streams: list[str],
    replays: int,
    items: int,
    seed: int = 0,
    reports_dir: Path | None = None,
    write_html: bool = True,
    log_to_mlflow: bool = True,
    batch: int = 8,
) -> list[ReplayResult]:
    """`replays` replays of each stream against the server at `url`; one drift check per replay."""
    import requests

    from components import monitor
    from components.register import load_python_model

    info = server_info(url)
    version, log_dir = str(info["version"]), Path(info["log_file"]).parent.parent
    python_model = load_python_model(f"models:/{cfg.model_name}/{version}")
    reference = monitor.load_reference(cfg.model_name, version)
    rng = np.random.default_rng(seed)
    run_tag = uuid.uuid4().hex[:8]
    results = []
    with requests.Session() as session:
        for stream in streams:
            for i in range(replays):
                start = time.perf_counter()
                prefix = f"replay-{run_tag}-{stream}-{i}-"
                requests_ = project.replay_requests(cfg, paths, stream, items, rng)
                statuses = []
                for j, request in enumerate(_batches(requests_, batch)):
                    statuses.append(post(session, url, request, f"{prefix}{j}"))
                decision = monitor.check(
                    project,
                    cfg,
                    version=version,
                    log_dir=log_dir,
                    reports_dir=reports_dir or monitor.REPORTS_DIR,
                    request_prefix=prefix,
                    write_html=write_html,
                    log_to_mlflow=log_to_mlflow,
                    python_model=python_model,
                    reference=reference,
                )
                results.append(
                    ReplayResult(
                        stream,
                        i,
                        len(statuses),
                        len(requests_),
                        sum(s != 200 for s in statuses),
                        bool(decision["drift"]),
                        decision["reasons"],
                        time.perf_counter() - start,
                    )
                )
    return results


def _batches(requests_: list[pd.DataFrame], batch: int) -> list[pd.DataFrame]:
    """Row-per-item requests (images) are sent `batch` rows at a time; window requests one by one."""
    if all(len(r) == 1 for r in requests_):
        return [pd.concat(requests_[i : i + batch], ignore_index=True) for i in range(0, len(requests_), batch)]
    return requests_


def summary(results: list[ReplayResult]) -> pd.DataFrame:
    """Per stream: replays, share flagged (detection power, or false-alarm rate for `unshifted`)."""
    frame = pd.DataFrame([dataclasses.asdict(r) for r in results])
    table = frame.groupby("stream", sort=False).agg(
        replays=("replay", "count"),
        items_per_replay=("items", "median"),
        flagged=("drift", "sum"),
        failed_requests=("failed", "sum"),
        seconds_per_replay=("seconds", "mean"),
    )
    table["flagged_share"] = table["flagged"] / table["replays"]
    table["measures"] = ["false-alarm rate" if s == "unshifted" else "detection power" for s in table.index]
    return table.reset_index()
