"""MLflow set-up shared by every stage: store, experiment, run tags, safe params.

The embedded default is `sqlite:///mlflow.db` with artifacts under ./mlruns; a team points
MLFLOW_TRACKING_URI at an `mlflow server` and nothing else changes. One experiment per project and
profile (cfg.model_name: `energy` for real data, `energy-demo` for the synthetic demo), so a demo run
never lands beside, or is gated against, a real one. Every run is tagged with the git commit, the
project, the profile, the stage and the data version.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
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
        mirror = WandbMirror(cfg.tracking.wandb_project, flatten(cfg.raw), stage) if cfg.tracking.wandb else None
        token = _WANDB_MIRROR.set(mirror)
        try:
            yield run
        finally:
            _WANDB_MIRROR.reset(token)


# ---- Weights & Biases, an optional mirror ----------------------------------------------------
# MLflow stays the source of truth (registry, gate, serving); W&B only mirrors the metrics each Trainer
# logs, for people who read their curves there. The Trainer (components.train.make_trainer) gets a
# TrainConfig and a run id, not the whole Config: stage_run, which has the Config and opens the MLflow
# run the Trainer logs to, publishes the choice in a context variable for the span of that run. That keeps
# every project's and stage's signature unchanged, ends with the run (an env var would outlive it and
# leak into the next stage or test in the same process), and a DDP child re-enters stage_run itself.


@dataclasses.dataclass(frozen=True)
class WandbMirror:
    project: str  # the W&B project (tracking.wandb_project)
    config: dict  # the stage's params, flattened and without secret-looking keys (what MLflow logged)
    stage: str  # the stage name, the W&B job type (train, tune)


_WANDB_MIRROR: contextvars.ContextVar[WandbMirror | None] = contextvars.ContextVar("scifolio_wandb", default=None)


def wandb_mode() -> str:
    """offline unless the environment says otherwise: nothing leaves the machine by default.

    WANDB_MODE=online (with WANDB_API_KEY in the environment, read by wandb itself and never passed,
    logged or stored by us) uploads; `wandb sync wandb/offline-run-*` uploads an offline run later.
    """
    return os.environ.get("WANDB_MODE") or "offline"


def wandb_logger(run_id: str):
    """Lightning's WandbLogger mirroring MLflow run `run_id`, or None when tracking.wandb is off.

    wandb is imported here, only when asked for: it costs seconds at import and most runs never use it.
    The W&B run carries the MLflow run id (config and tags), so each curve leads back to the run of record.
    """
    mirror = _WANDB_MIRROR.get()
    if mirror is None:
        return None
    from lightning.pytorch.loggers import WandbLogger

    class FinishingWandbLogger(WandbLogger):
        """Ends its W&B run when the fit ends: Lightning's logger leaves it open, and the next Trainer in
        this process (the next Optuna trial) would then append to it instead of starting its own."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            # Lightning always passes anonymous=None, which wandb (0.31, the locked one) answers with a deprecation
            # warning on every run; dropping the key changes nothing else (None is wandb's default)
            self._wandb_init.pop("anonymous", None)

        def finalize(self, status: str) -> None:
            super().finalize(status)
            if self._experiment is not None:
                self._experiment.finish(exit_code=0 if status == "success" else 1)
                self._experiment = None

    return FinishingWandbLogger(
        project=mirror.project,
        name=f"{mirror.stage}-{run_id[:8]}",
        job_type=mirror.stage,
        config={**mirror.config, "mlflow.run_id": run_id},
        tags=[f"mlflow:{run_id}"],
        mode=wandb_mode(),
        log_model=False,  # checkpoints are MLflow artifacts; a second copy in W&B would be uploaded in online mode
        save_dir=os.environ.get("WANDB_DIR") or ".",  # wandb then writes ./wandb/<run>, its usual place
    )
