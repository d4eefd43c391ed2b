"""The Lightning Trainer every project trains with, and one `fit` call around it.

GPU when present (bf16 mixed precision, DDP across several devices), seeded and deterministic on
CPU, early stopping and best-checkpoint selection on the project's selection metric
(`Project.objective.select`, e.g. val/loss minimised or val/macro_f1 maximised), metrics streamed to
the stage's MLflow run. Lightning is imported inside the functions: it costs ~4 s at import.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from components.config import TrainConfig
from components.project import Metric
from components.steps import fit_data


@dataclasses.dataclass
class FitResult:
    best_checkpoint: Path
    best_score: float  # the selection metric at the best checkpoint
    epochs: int  # epochs actually run
    history: list[dict]  # one row per epoch: epoch, train/loss, val/loss, ...
    seconds: float


def epoch_history():
    """A callback collecting the epoch-level metrics Lightning aggregated (for loss curves)."""
    from lightning.pytorch.callbacks import Callback

    class EpochHistory(Callback):
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # runs after validation
            if trainer.sanity_checking:
                return
            row = {"epoch": trainer.current_epoch}
            row.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
            self.rows.append(row)

        def best(self, metric: Metric) -> float:
            """The best epoch value of `metric` (what an Optuna trial reports); NaN epochs never win."""
            import math

            values = [r[metric.name] for r in self.rows if metric.name in r and math.isfinite(r[metric.name])]
            if not values:
                logged = sorted({k for r in self.rows for k in r})
                raise RuntimeError(f"{metric.name} was never logged with a finite value (logged: {logged})")
            return min(values) if metric.direction == "minimize" else max(values)

    return EpochHistory()


def accelerator_settings(train: TrainConfig) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.is_available()
    precision = train.precision
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    devices: Any = train.devices if train.devices == "auto" else int(train.devices)
    return {
        "accelerator": "gpu" if gpu else "cpu",
        "devices": devices,
        "precision": precision,
        # determinism is cheap on CPU and reproducible in CI; on GPU it costs cuDNN autotuning
        "deterministic": bool(train.deterministic and not gpu),
        "benchmark": gpu,
    }


def make_trainer(
    train: TrainConfig,
    checkpoint_dir: Path,
    monitor: Metric,
    *,
    max_epochs: int | None = None,
    run_id: str | None = None,
    callbacks: list | None = None,
    enable_checkpointing: bool = True,
    progress_bar: bool | None = None,
):
    """A configured `lightning.pytorch.Trainer` (and the callbacks the caller reads back)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    callbacks = list(callbacks or [])
    # EarlyStopping's check_finite (on by default) ends training when the selection metric becomes NaN/inf
    callbacks.append(EarlyStopping(monitor=monitor.name, mode=monitor.mode, patience=train.patience))
    if enable_checkpointing:
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir, filename="best", monitor=monitor.name, mode=monitor.mode, save_top_k=1
            )
        )
    logger: Any = False
    if run_id:
        import mlflow
        from lightning.pytorch.loggers import MLFlowLogger

        logger = MLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run_id, log_model=False)
    if progress_bar is None:  # a bar in a terminal, quiet in CI logs and DVC pipes
        progress_bar = os.isatty(2) and not os.environ.get("CI")
    return pl.Trainer(
        max_epochs=max_epochs if max_epochs is not None else train.max_epochs,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=enable_checkpointing,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=str(checkpoint_dir),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        **accelerator_settings(train),
    )


def fit(
    module,
    datamodule,
    train: TrainConfig,
    checkpoint_dir: Path,
    monitor: Metric,
    seed: int,
    run_id: str | None = None,
) -> FitResult:
    """Train with early stopping; the best checkpoint is kept at checkpoint_dir/best.ckpt."""
    import time

    import lightning.pytorch as pl

    pl.seed_everything(seed, workers=True, verbose=False)
    history = epoch_history()
    trainer = make_trainer(train, checkpoint_dir, monitor, run_id=run_id, callbacks=[history])
    start = time.perf_counter()
    trainer.fit(module, **fit_data(datamodule))
    seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback
    if not best.best_model_path:
        raise RuntimeError(f"no checkpoint was saved: {monitor.name} was never logged with a finite value")
    return FitResult(
        best_checkpoint=Path(best.best_model_path),
        best_score=float(best.best_model_score),
        epochs=trainer.current_epoch,
        history=history.rows,
        seconds=seconds,
    )
