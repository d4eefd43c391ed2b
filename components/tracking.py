"""MLflow set-up shared by every stage: store, experiment, run tags, safe params.

The embedded default is `sqlite:///mlflow.db` with artifacts under ./mlruns; a team points
MLFLOW_TRACKING_URI at an `mlflow server` and nothing else changes. One experiment per project;
every run is tagged with the git commit, the profile, the stage and the data version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow

from components.config import Config

SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.IGNORECASE)


def setup(project: str, cfg: Config) -> str:
    """Point MLflow at the store and the project's experiment; returns the tracking URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(project)
    return uri


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hash_files(folder: Path) -> str:
    """sha256 over the relative names and bytes of every file below `folder`, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """Nested params -> {"energy.model.d_model": 16}, without anything that looks like a secret."""
    flat = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def run_tags(project: str, stage: str, cfg: Config, data_version: str | None) -> dict[str, str]:
    tags = {
        "scifolio.project": project,
        "scifolio.stage": stage,
        "scifolio.profile": cfg.profile,
        "mlflow.source.git.commit": git_commit(),
    }
    if data_version:
        tags["scifolio.data_version"] = data_version
    return tags


@contextlib.contextmanager
def stage_run(
    project: str,
    stage: str,
    cfg: Config,
    data_version: str | None = None,
    run_id: str | None = None,
    log_params: bool = True,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume, with run_id) the MLflow run of one stage, tagged and with the params."""
    # `mlflow run` exports its own run id; our stages log to the project's experiment instead.
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(key, None)
    setup(project, cfg)
    if run_id:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(run_name=stage, tags=run_tags(project, stage, cfg, data_version))
    with run:
        if log_params and not run_id:
            mlflow.log_params(flatten(cfg.raw))
        yield run
