"""The LightningModule for forecasting: MSE on the standardised scale, Adam, train/val metrics."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from components.steps import SplitSteps
from pipelines.energy.models import build_model


class Forecaster(SplitSteps, pl.LightningModule):
    def __init__(
        self,
        model: str,
        model_hparams: dict,
        seq_len: int,
        horizon: int,
        n_channels: int,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, seq_len, horizon, n_channels, **model_hparams)
        self.lr, self.weight_decay = lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        pred = self(x)
        loss = F.mse_loss(pred, y)
        # epoch means weighted by batch size: val/loss is exactly the MSE over every window; under DDP each
        # process sees a shard, so the epoch value is averaged across processes (a no-op on one process)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        if stage != "train":
            self.log(f"{stage}/mae", F.l1_loss(pred, y), on_epoch=True, batch_size=len(x), sync_dist=True)
        return loss

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
