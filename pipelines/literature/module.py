"""The LightningModule of every task: cross-entropy on the labelled positions; logs train/loss, val/loss, val/macro_f1.

Sentence tasks have one label per sequence; roles has one per [SEP] (IGNORE elsewhere): both are the
labelled positions of the logits, so one step serves both networks.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from components.steps import SplitSteps
from pipelines.literature.data import IGNORE


class LiteratureModule(SplitSteps, pl.LightningModule):
    def __init__(self, net: torch.nn.Module, hparams: dict) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)  # lr, weight_decay, dropout and the architecture, for export
        self.net = net
        self.outputs: dict[str, list] = {}

    def step(self, batch, stage: str):
        ids, mask, y = batch
        logits = self.net(ids, mask)
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        keep = y != IGNORE
        logits, y = logits[keep], y[keep]
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        if stage != "train":
            self.outputs.setdefault(stage, []).append((logits.argmax(1).detach().cpu(), y.cpu()))
        return loss

    def on_validation_epoch_end(self) -> None:
        from sklearn.metrics import f1_score

        pairs = self.outputs.pop("val", [])
        if not pairs:
            return
        predicted = torch.cat([p for p, _ in pairs]).numpy()
        truth = torch.cat([t for _, t in pairs]).numpy()
        labels = list(range(self.net.n_labels))
        score = f1_score(truth, predicted, average="macro", labels=labels, zero_division=0)
        self.log("val/macro_f1", float(score))

    def configure_optimizers(self):
        # only what is trained (a frozen encoder has requires_grad off): AdamW keeps no moments for fixed weights
        trained = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(trained, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])


CitationModule = LiteratureModule  # the first slice's name
