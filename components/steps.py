"""The Lightning boilerplate every project repeats, written once: split steps and split dataloaders.

A project's LightningModule writes one `step(batch, stage)` (its loss and the metrics it logs under
`<stage>/...`); `SplitSteps` turns it into Lightning's training/validation/test steps. A project's
data module (a LightningDataModule, or a plain class: `fit_data`) writes one `loader(split, train)`;
`SplitLoaders` turns it into the four dataloader hooks, and `loader_options` holds the DataLoader settings
every project shares.
Nothing heavy is imported here: the mixins are plain classes placed before the Lightning base class.
"""

from __future__ import annotations

from typing import Any


class SplitSteps:
    """training_step / validation_step / test_step from `self.step(batch, stage)`."""

    def step(self, batch: Any, stage: str):  # pragma: no cover - the project's module overrides it
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.step(batch, "test")


class SplitLoaders:
    """train/val/test/predict dataloaders from `self.loader(split, train)`; predict reads the test split."""

    def loader(self, split: str, train: bool):  # pragma: no cover - the project's data module overrides it
        raise NotImplementedError

    def train_dataloader(self):
        return self.loader("train", train=True)

    def val_dataloader(self):
        return self.loader("val", train=False)

    def test_dataloader(self):
        return self.loader("test", train=False)

    def predict_dataloader(self):
        return self.loader("test", train=False)


def fit_data(datamodule) -> dict:
    """`trainer.fit`'s data arguments for a LightningDataModule or for a plain SplitLoaders object.

    A project whose data module is a plain class (energy, literature, protein) keeps Lightning out of the stages that only
    read the data (evaluate, register): importing it costs 4-6 s here, more than those stages' work.
    """
    import lightning.pytorch as pl

    if isinstance(datamodule, pl.LightningDataModule):
        return {"datamodule": datamodule}
    return {"train_dataloaders": datamodule.train_dataloader(), "val_dataloaders": datamodule.val_dataloader()}


def loader_options(num_workers: int) -> dict:
    """DataLoader settings shared by every project: workers kept alive across epochs, pinned memory on GPU."""
    import torch

    return {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,  # re-forking workers every epoch costs seconds
        "pin_memory": torch.cuda.is_available(),  # faster host-to-GPU copies; pointless on CPU
    }
