"""The Lightning Trainer every project trains with, and one `fit` call around it.

GPU when present (bf16 mixed precision, DDP across several devices), seeded and deterministic on
CPU, early stopping and best-checkpoint selection on the project's selection metric
(`Project.objective.select`, e.g. val/loss minimised or val/macro_f1 maximised), metrics streamed to
the stage's MLflow run. Lightning is imported inside the functions: it costs ~4 s at import.

Crash and resume (`python -m pipelines <project> train --resume`): `fit(..., last=path)` keeps one
`last.ckpt` there, written atomically at each epoch end and, with `train.checkpoint_every_n_steps`,
every N optimizer steps. Resuming continues the interrupted run exactly, mid-epoch too: Lightning
restores weights, optimizer, loop counters and callback state (early stopping, best checkpoint, the
epoch history); the train DataLoader is made resumable (`resumable`): its checkpoint state holds the
global RNG states (torch, numpy, Python) and the RNG state the interrupted epoch's iterator drew its
shuffle from, so the resumed epoch replays the same permutation, skips the batches already trained
and goes on with the same dropout draws. Without that, Lightning restarts a mid-epoch resume from a
fresh shuffle (and warns); tests/distributed/test_resume.py checks equality with an uninterrupted run.
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
    processes: int = 1  # Lightning's world size: 2 under DDP on two devices


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

        # saved in every checkpoint, so that a resumed run's history holds the epochs before the crash
        def state_dict(self) -> dict:
            return {"rows": [dict(r) for r in self.rows]}

        def load_state_dict(self, state_dict: dict) -> None:
            self.rows = [dict(r) for r in state_dict["rows"]]

        def best(self, metric: Metric) -> float:
            """The best epoch value of `metric` (what an Optuna trial reports); NaN epochs never win."""
            import math

            values = [r[metric.name] for r in self.rows if metric.name in r and math.isfinite(r[metric.name])]
            if not values:
                logged = sorted({k for r in self.rows for k in r})
                raise RuntimeError(f"{metric.name} was never logged with a finite value (logged: {logged})")
            return min(values) if metric.direction == "minimize" else max(values)

    return EpochHistory()


def is_ddp_worker() -> bool:
    """True in a rank > 0 process of a DDP run: one Lightning's launcher started by re-running the command
    (it sets LOCAL_RANK/NODE_RANK in the children), or one torchrun started (RANK). Such a process trains
    its shard of every batch inside the same Trainer; logging, files and outputs are rank 0's alone."""
    if "RANK" in os.environ:
        return os.environ["RANK"] != "0"
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


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
    last: Path | None = None,
):
    """A configured `lightning.pytorch.Trainer` (and the callbacks the caller reads back).

    `last`: where to keep the resume checkpoint (see `LastCheckpoint`); None keeps none (tune trials, ablations)."""
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
    if enable_checkpointing and last is not None:
        callbacks.append(last_checkpoint(last, train.checkpoint_every_n_steps))
    logger: Any = False
    if run_id:
        import mlflow
        from lightning.pytorch.loggers import MLFlowLogger

        from components.tracking import wandb_logger

        logger = MLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run_id, log_model=False)
        mirror = wandb_logger(run_id)  # None unless tracking.wandb: MLflow stays first, the run of record
        if mirror is not None:
            logger = [logger, mirror]
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
    last: Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train with early stopping; the best checkpoint is kept at checkpoint_dir/best.ckpt.

    `last`: keep a resume checkpoint at this path; `resume`: continue from it (it must exist)."""
    import time

    import lightning.pytorch as pl

    if resume and (last is None or not last.is_file()):
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {last}")
    pl.seed_everything(seed, workers=True, verbose=False)
    history = epoch_history()
    trainer = make_trainer(train, checkpoint_dir, monitor, run_id=run_id, callbacks=[history], last=last)
    data = fit_data(datamodule)
    if last is not None and "train_dataloaders" in data:
        # a LightningDataModule builds its loaders inside Lightning: those resume at epoch ends only (Lightning warns)
        data["train_dataloaders"] = resumable(data["train_dataloaders"])
    start = time.perf_counter()
    # weights_only=False: our own checkpoint, whose loop and callback state are plain Python objects
    trainer.fit(module, **data, ckpt_path=str(last) if resume else None, weights_only=False)
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
        processes=trainer.world_size,
    )


# ---- crash and resume ---------------------------------------------------------------------------


def rng_states() -> dict:
    """The global RNG states (torch, CUDA, numpy, Python), as plain values a weights_only load accepts."""
    import random

    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def resumable(loader):
    """`loader` (a plain torch DataLoader) turned into one whose position and RNG survive a checkpoint.

    The object keeps its identity and settings (Lightning may still re-create it, e.g. with a
    DistributedSampler: the subclass keeps DataLoader's constructor); only its class changes, to
    `ResumableDataLoader`, which Lightning recognises as stateful (state_dict / load_state_dict) and
    saves with the loop state. Anything else (a custom iterable) is returned unchanged.
    """
    from torch.utils.data import DataLoader

    if type(loader) is DataLoader:
        loader.__class__ = _resumable_class()
    return loader


def _resumable_class():
    global _RESUMABLE
    if _RESUMABLE is None:
        from torch.utils.data import DataLoader

        class ResumableDataLoader(DataLoader):
            """A DataLoader that replays an interrupted epoch: same shuffle, batches already trained skipped.

            The shuffle (and the workers' seeds) are drawn from torch's global RNG when an epoch's iterator
            starts, so the state to keep is that RNG state, taken just before, plus the number of batches
            the training loop finished (`consumed`, set by LastCheckpoint after each batch: the loader
            itself runs one batch ahead, Lightning prefetches it).
            """

            consumed = 0  # batches of the current epoch already trained
            _epoch_rng = None  # torch's global RNG state before this epoch's iterator drew its seeds
            _pending = None  # a checkpoint's state, applied when the next epoch's iterator starts

            def state_dict(self) -> dict:
                states = rng_states()
                return {"consumed": self.consumed, "batches": len(self), "epoch_rng": self._epoch_rng, "rng": states}

            def load_state_dict(self, state_dict: dict) -> None:
                self._pending = state_dict

            def __iter__(self):
                return self._epoch()

            def _epoch(self):
                # a generator: this body runs at the first batch request, in a fresh run and in a resumed one alike
                state, self._pending = self._pending, None
                mid_epoch = state is not None and 0 < state["consumed"] < len(self)
                if state is not None and not mid_epoch:  # saved at an epoch end: the next epoch draws from here
                    set_rng_states(state["rng"])
                if mid_epoch:  # the interrupted epoch's seeds again, hence its permutation
                    import torch

                    torch.set_rng_state(state["epoch_rng"])
                self._epoch_rng = rng_states()["torch"]
                batches = super().__iter__()
                self.consumed = state["consumed"] if mid_epoch else 0
                for _ in range(self.consumed):  # read and dropped: a sampler-level skip would need its internals
                    next(batches)
                if mid_epoch:  # the RNG as the crashed run left it after its last trained batch (dropout draws)
                    set_rng_states(state["rng"])
                yield from batches

        _RESUMABLE = ResumableDataLoader
    return _RESUMABLE


_RESUMABLE = None


def last_checkpoint(path: Path, every_n_steps: int):
    """A callback keeping the resume checkpoint at `path`: after each epoch (validation and early stopping
    done) and every `every_n_steps` optimizer steps (0: epoch ends only). Written to a temporary file and
    renamed, so a kill during the write leaves the previous checkpoint whole."""
    from lightning.pytorch.callbacks import Callback

    class LastCheckpoint(Callback):
        """Also carries the running sums of the epoch's logged means (train/loss) across a mid-epoch resume:
        Lightning does not checkpoint them, so the resumed epoch's mean would cover only its last batches."""

        trainer = None
        mid_epoch_save = False  # True while this callback writes a mid-epoch checkpoint
        pending: dict | None = None  # running sums from the checkpoint, added after the first resumed batch

        def setup(self, trainer, pl_module, stage) -> None:
            self.trainer = trainer

        def state_dict(self) -> dict:
            return {"epoch_sums": epoch_sums(self.trainer) if self.mid_epoch_save else {}}

        def load_state_dict(self, state_dict: dict) -> None:
            self.pending = state_dict.get("epoch_sums") or None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.pending:  # after the first resumed batch's update: S + x, the sum the crashed run would make
                add_epoch_sums(trainer, self.pending)
                self.pending = None
            loader = trainer.train_dataloader
            if hasattr(loader, "consumed"):  # a ResumableDataLoader: record how far this epoch got
                loader.consumed = batch_idx + 1
            inside_epoch = batch_idx + 1 < trainer.num_training_batches  # the epoch end saves on its own
            if every_n_steps and trainer.global_step % every_n_steps == 0 and inside_epoch:
                self.mid_epoch_save = True
                try:
                    self.save(trainer)
                finally:
                    self.mid_epoch_save = False

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            # after the last epoch (or an early stop) the run is over: a checkpoint would only resume into
            # one epoch more, as Lightning does not save the stop decision
            if not trainer.should_stop and trainer.current_epoch + 1 < trainer.max_epochs:
                self.save(trainer)

        def save(self, trainer) -> None:
            tmp = path.with_name(f".{path.name}.tmp")
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:  # only rank 0 writes the file
                os.replace(tmp, path)

    path.parent.mkdir(parents=True, exist_ok=True)
    return LastCheckpoint()


def _epoch_metrics(trainer) -> dict:
    # private: Lightning keeps no public handle on the running epoch-level aggregates of `self.log(on_epoch=True)`
    results = trainer.fit_loop.epoch_loop._results
    return {k: m for k, m in results.items() if getattr(m, "is_tensor", False) and m.meta.on_epoch}


def epoch_sums(trainer) -> dict:
    """The running reductions (sum and batch count of a mean, or the max/min so far) of this epoch's metrics."""
    sums = {}
    for key, metric in _epoch_metrics(trainer).items():
        count = metric.cumulated_batch_size.detach().cpu().clone() if metric.meta.is_mean_reduction else None
        sums[key] = {"value": metric.value.detach().cpu().clone(), "count": count}
    return sums


def add_epoch_sums(trainer, sums: dict) -> None:
    """Fold the crashed run's partial reductions into the resumed epoch's, in the order the crashed run would
    have added them (saved + this batch), so that the epoch means come out bit-identical."""
    for key, metric in _epoch_metrics(trainer).items():
        if key not in sums:
            continue
        saved = sums[key]["value"].to(metric.value.device)
        if metric.meta.is_mean_reduction or metric.meta.is_sum_reduction:
            metric.value = saved + metric.value
            if metric.meta.is_mean_reduction:
                metric.cumulated_batch_size = sums[key]["count"].to(metric.value.device) + metric.cumulated_batch_size
        else:  # max / min
            metric.value = metric.meta.reduce_fx(saved, metric.value)
