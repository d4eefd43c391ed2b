"""Optuna hyper-parameter search, one study per project and data version.

TPE sampler (seeded), median or Hyperband pruning through optuna-integration's Lightning callback,
each trial a nested MLflow run under the stage's run. Storage: a journal file by default (safe for
several processes on one machine); any RDB URL (postgresql://...) lets workers on many machines
join the same study: run `python -m pipelines <project> tune` on each.

On an RDB storage each running trial writes a heartbeat every `tune.heartbeat_s`; a trial whose
heartbeat is older than `tune.grace_s` belongs to a dead worker (killed, preempted, lost its
machine). The next trial any live worker starts marks it FAIL and re-queues its parameters as a
WAITING trial (up to `tune.retries` times), which that worker then runs: no trial of a killed
worker is silently lost. tests/distributed/test_optuna_postgres.py kills a worker to prove it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from components.config import TuneConfig
from components.project import Metric

log = logging.getLogger("scifolio.tune")


@dataclasses.dataclass
class TuneResult:
    best_params: dict
    best_value: float
    best_trial: int
    n_complete: int
    n_pruned: int
    study_name: str
    storage: str


def optimiser_space(trial, lr: float, weight_decay: tuple[float, float] = (1e-4, 1e-1)) -> dict:
    """The search space the transformer-style projects share: the learning rate log-uniform within 3x of
    params.yaml's (it follows `train.lr` because a scratch network and a pretrained one want rates 10-100x
    apart), weight decay log-uniform, dropout uniform in [0, 0.3]; the architecture stays fixed."""
    return {
        "lr": trial.suggest_float("lr", lr / 3, lr * 3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *weight_decay, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def make_storage(tune: TuneConfig, default_journal: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if tune.storage in ("", "journal"):
        default_journal.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(default_journal))), f"journal:{default_journal}"
    if tune.storage.startswith("journal:"):
        path = tune.storage.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path)), tune.storage
    storage = optuna.storages.RDBStorage(
        rdb_url(tune.storage),
        heartbeat_interval=tune.heartbeat_s,
        grace_period=tune.grace_s,
        **{retry_keyword(): retry_callback()(max_retry=tune.retries)},
    )
    return storage, tune.storage.split("@")[-1]  # no password in logs


def rdb_url(url: str) -> str:
    """`url` for SQLAlchemy, with the PostgreSQL driver that is installed: SQLAlchemy 2.1 reads a bare
    postgresql:// as psycopg (3), while the lock file ships psycopg2; an explicit +driver is kept as written."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def retry_callback():
    """Optuna's callback that re-queues a heartbeat-stale trial (renamed in Optuna 4.9; the old name warns)."""
    from optuna import storages

    return getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback


def retry_keyword() -> str:
    """RDBStorage's argument for that callback: `heartbeat_stale_trial_callback` since 4.9, before it
    `failed_trial_callback`."""
    import inspect

    import optuna

    new = "heartbeat_stale_trial_callback"
    return new if new in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback"


def retried_from(trial) -> int | None:
    """The number of the dead worker's trial that `trial` (live or frozen) reruns (None: a fresh trial).

    A live `optuna.Trial` does not expose its system attributes: they are read from its stored copy."""
    from optuna.trial import FrozenTrial, TrialState

    if isinstance(trial, FrozenTrial):
        return retry_callback().retried_trial_number(trial)
    running = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stored = next((t for t in running if t.number == trial.number), None)
    return None if stored is None else retry_callback().retried_trial_number(stored)


def sampler_seed(seed: int, storage, worker: str) -> int:
    """The TPE sampler's seed: `seed` itself on a journal file (one machine: a rerun repeats the study); on an
    RDB storage, where workers on many machines share the study, `seed` mixed with the worker's identity, or
    every worker would propose the same parameters in the same order (its random start-up trials included)."""
    import zlib

    import optuna

    if not isinstance(storage, optuna.storages.RDBStorage):
        return seed
    return (seed * 1_000_003 + zlib.crc32(worker.encode())) % 2**32  # crc32: stable across runs, unlike hash()


def make_pruner(tune: TuneConfig):
    import optuna

    if tune.pruner == "median":  # stop a trial whose metric is worse than the median at that epoch
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(tune.max_epochs, 1))
    if tune.pruner == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"tune.pruner: {tune.pruner!r} is not one of median, hyperband, none")


def run_study(
    objective_fit: Callable[[dict, list, str], float],
    search_space: Callable,
    tune: TuneConfig,
    metric: Metric,
    study_name: str,
    journal: Path,
    seed: int,
) -> TuneResult:
    """Search `search_space` for the best `metric` (minimised or maximised, as the project declares).

    `objective_fit(params, callbacks, trial_run_id)` trains one trial and returns its best epoch value of
    `metric`; the pruning callback reads the same metric at each validation epoch.

    Must be called inside the stage's active MLflow run: trials become its nested runs.
    """
    import mlflow
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, storage_label = make_storage(tune, journal)
    worker = f"{socket.gethostname()}:{os.getpid()}"  # which machine and process ran a trial (or died in it)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=metric.direction,  # the project's objective.study
        sampler=optuna.samplers.TPESampler(seed=sampler_seed(seed, storage, worker)),
        pruner=make_pruner(tune),
        load_if_exists=True,  # other workers may have created it
    )

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial)  # a retried trial's parameters are fixed: the dead worker's ones
        trial.set_user_attr("worker", worker)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True) as run:
            mlflow.log_params(params)
            mlflow.set_tag("optuna.trial", trial.number)
            if (original := retried_from(trial)) is not None:
                mlflow.set_tag("optuna.retry_of", original)
            pruning = PyTorchLightningPruningCallback(trial, monitor=metric.name)
            try:
                value = objective_fit(params, [pruning], run.info.run_id)
            except optuna.TrialPruned:
                mlflow.set_tag("optuna.state", "pruned")
                raise
            mlflow.set_tag("optuna.state", "complete")
            mlflow.log_metric(f"best/{metric.name}", value)
            return value

    study.optimize(objective, n_trials=tune.n_trials, timeout=tune.timeout_s or None, gc_after_trial=True)
    states = [t.state for t in study.trials]
    if optuna.trial.TrialState.COMPLETE not in states:
        raise RuntimeError(
            f"study {study_name}: none of {len(states)} trial(s) completed (pruned or failed); "
            "raise tune.n_trials or tune.max_epochs, or set tune.pruner=none"
        )
    best = study.best_trial
    log.info("study %s: best %s=%.5f (trial %d)", study_name, metric.name, best.value, best.number)
    return TuneResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        n_complete=states.count(optuna.trial.TrialState.COMPLETE),
        n_pruned=states.count(optuna.trial.TrialState.PRUNED),
        study_name=study_name,
        storage=storage_label,
    )
