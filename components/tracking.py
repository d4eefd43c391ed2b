"""MLflow set-up shared by every stage: store, experiment, run tags, safe params.

The embedded default is `sqlite:///mlflow.db` with artifacts under ./mlruns; a team points
MLFLOW_TRACKING_URI at an `mlflow server` and nothing else changes. One experiment per project and
profile (cfg.model_name: `energy` for real data, `energy-demo` for the synthetic demo), so a demo run
never lands beside, or is gated against, a real one. Every run is tagged with the git commit, the
project, the profile, the stage and the data version.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow

from components.config import Config

SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.IGNORECASE)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 opens the model-training view


def setup(experiment: str, cfg: Config) -> str:
    """Point MLflow at the store and the experiment (cfg.model_name: `energy`, `energy-demo`); returns the URI.

    A new experiment is tagged as a model-development one: without the tag MLflow 3's UI opens it as a
    GenAI experiment on an empty traces page.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is None:
        try:
            client.create_experiment(
                experiment, tags={**EXPERIMENT_KIND, "scifolio.project": cfg.name, "scifolio.profile": cfg.profile}
            )
        except mlflow.exceptions.MlflowException:  # another stage created it meanwhile
            pass
    elif existing.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        client.set_experiment_tag(existing.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
    mlflow.set_experiment(experiment)
    return uri


def log_dataset(cfg: Config, paths, version: str) -> None:
    """The validated data as the run's MLflow dataset input (the runs table's Dataset column).

    Only metadata: the data stays in DVC; the digest is the data version's first 16 hex digits (MLflow
    stores at most 36 characters) and the full version is the run's scifolio.data_version tag.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "file" and "" both map to the local source class: MLflow warns, harmlessly
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(Path(paths.raw).resolve().as_uri())
    dataset = MetaDataset(source, name=f"{cfg.model_name}-data", digest=version[:16])
    mlflow.log_input(dataset, context="training", tags={"data_version": version, "profile": cfg.profile})


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
    experiment: str,
    stage: str,
    cfg: Config,
    data_version: str | None = None,
    run_id: str | None = None,
    log_params: bool = True,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume, with run_id) the MLflow run of one stage in `experiment` (cfg.model_name), tagged."""
    # `mlflow run` exports its own run id; our stages log to the project's experiment instead.
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(key, None)
    setup(experiment, cfg)
    if run_id:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(run_name=stage, tags=run_tags(cfg.name, stage, cfg, data_version))
    with run:
        if log_params and not run_id:
            mlflow.log_params(flatten(cfg.raw))
        yield run
