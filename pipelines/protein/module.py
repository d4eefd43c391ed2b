"""The LightningModule of contact prediction: distogram cross-entropy; logs train/loss, val/loss and
val/long_L5 (precision of the top L/5 long-range contacts, the CASP headline number)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from components.steps import SplitSteps
from pipelines.protein.contacts import distogram_loss


class ProteinModule(SplitSteps, pl.LightningModule):
    def __init__(self, net: torch.nn.Module, hparams: dict) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)  # lr, weight_decay and the architecture, for export
        self.net = net
        self.precisions: list[float] = []

    def step(self, data, stage: str):
        passes = self.net.passes(data)  # one pass; two with predicted spatial edges (contacts.ContactNet)
        losses = [distogram_loss(logits, data.labels) for logits in passes]
        logits, loss = passes[-1], losses[-1]
        # logged: the prediction's own loss (the last pass), comparable across edge variants; optimised: the mean
        # over passes, so the first pass, whose contacts pick the spatial edges, is trained as well
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=1)
        if stage == "val":
            self.precisions.append(long_range_precision(logits, data.points))
        return loss if len(losses) == 1 else torch.stack(losses).mean()

    def on_validation_epoch_end(self) -> None:
        values = [p for p in self.precisions if p is not None]
        self.precisions = []
        if values:
            self.log("val/long_L5", float(np.mean(values)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])


def long_range_precision(logits: torch.Tensor, points: torch.Tensor) -> float | None:
    """Top-L/5 long-range precision of one chain from its logits and its representative atoms."""
    from pipelines.protein import geometry

    probs = torch.softmax(logits.detach().float(), -1).cpu().numpy()
    scores = geometry.contact_probability(probs)
    return geometry.top_precision(scores, geometry.distances(points.cpu().numpy()), "long", 5)
