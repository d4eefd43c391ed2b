"""The LightningModule for chest X-ray diagnosis: masked multi-label BCE, AdamW, loss and AUROC.

Labels are [B, n_findings] with 1/0 and NaN for masked (uncertain / unknown: MIMIC's CheXpert
"-1" and blanks, the NIH findings MIMIC does not label). A masked entry contributes nothing to
the loss, its gradient or the AUROC: it is neither a positive nor a negative.
"""

from __future__ import annotations

import logging
import math

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from components.steps import SplitSteps
from pipelines.medical.evaluation.metrics import mean_auroc
from pipelines.medical.models import build_model

__all__ = ["masked_bce", "MedicalClassifier"]

log = logging.getLogger("scifolio.medical.module")


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | list[float] | None = None
) -> torch.Tensor:
    """BCE-with-logits averaged over the entries whose label is not NaN.

    `pos_weight` [n_findings] multiplies the positive term of each finding (rare findings such as
    Hernia would otherwise be learnt as "always absent"). Everything masked: 0, still with a graph.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {list(logits.shape)} and labels {list(labels.shape)} differ in shape")
    known = ~torch.isnan(labels)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    # NaN targets replaced by 0 only so the elementwise loss is finite; those entries are dropped below
    loss = F.binary_cross_entropy_with_logits(
        logits, torch.where(known, labels, 0.0).to(logits.dtype), pos_weight=pos_weight, reduction="none"
    )
    # where, not multiply: a masked entry's gradient is exactly 0 even if its loss were inf
    return torch.where(known, loss, 0.0).sum() / known.sum().clamp(min=1)


class MedicalClassifier(SplitSteps, pl.LightningModule):
    """Either network of models.py trained on dict batches {image, tokens, labels, meta}.

    Logs train/loss, val/loss (epoch means, weighted by batch size) and val/auroc (from every
    validation prediction of the epoch); test/ likewise. `pos_weight` [n_findings] up-weights each
    finding's positives in the loss (typically n_negative / n_positive on the train split).
    """

    def __init__(
        self,
        model: str,
        model_hparams: dict,
        vocab_size: int | None,
        n_findings: int = 14,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        pos_weight: list[float] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, n_findings, vocab_size, **model_hparams)
        self.lr, self.weight_decay = lr, weight_decay
        if pos_weight is not None:
            pw = torch.as_tensor(pos_weight, dtype=torch.float32)
            if pw.shape != (n_findings,) or not torch.isfinite(pw).all() or (pw <= 0).any():
                raise ValueError(f"pos_weight must be {n_findings} positive finite numbers, got {pos_weight!r}")
            # a buffer so it follows the module to the GPU; not persistent: it is a hyper-parameter,
            # already in the checkpoint's hparams, and would break loading across settings
            self.register_buffer("pos_weight", pw, persistent=False)
        else:
            self.pos_weight = None
        self._collected: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def forward(self, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(image, tokens)

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["image"], batch.get("tokens"))
        labels = batch["labels"]
        loss = masked_bce(logits, labels, self.pos_weight)
        # epoch means weighted by batch size (an approximation when batches differ in masked count)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        if stage != "train":
            probs, labs = self._collected.setdefault(stage, ([], []))
            probs.append(torch.sigmoid(logits).detach().float().cpu())
            labs.append(labels.detach().float().cpu())
        return loss

    def predict_step(self, batch, batch_idx):
        return torch.sigmoid(self(batch["image"], batch.get("tokens")))

    def on_validation_epoch_start(self):
        self._collected.pop("val", None)

    def on_test_epoch_start(self):
        self._collected.pop("test", None)

    def _log_auroc(self, stage: str) -> None:
        probs, labs = self._collected.pop(stage, ([], []))
        if not probs:
            return
        p, y = torch.cat(probs), torch.cat(labs)
        if self.trainer.world_size > 1:
            # AUROC is not a mean of per-rank AUROCs: gather every prediction first (the
            # DistributedSampler pads ranks to equal sizes, as all_gather requires)
            p = self.all_gather(p.to(self.device)).flatten(0, 1).cpu()
            y = self.all_gather(y.to(self.device)).flatten(0, 1).cpu()
        p, y = p.numpy().astype(np.float64), y.numpy().astype(np.float64)
        if not np.isfinite(p).all():  # a diverged model: report it, do not crash the epoch
            log.warning("%s: %d non-finite predictions; %s/auroc is NaN", stage, int((~np.isfinite(p)).sum()), stage)
            auroc = math.nan
        else:
            # the evaluation stage's definition (scikit-learn's roc_auc_score per finding on its
            # unmasked rows, mean over findings holding both classes), so training and the report agree
            auroc = mean_auroc(y, p)
        # NaN when no finding has both classes (tiny sanity-check epochs); ModelCheckpoint ranks NaN last
        self.log(f"{stage}/auroc", auroc, prog_bar=True)

    def on_validation_epoch_end(self):
        self._log_auroc("val")

    def on_test_epoch_end(self):
        self._log_auroc("test")

    def configure_optimizers(self):
        # AdamW: decoupled weight decay (Loshchilov & Hutter 2019); plain Adam's L2 interacts with
        # the adaptive step. CheXNet trained with Adam at lr 1e-3; 1e-4 suits the text/fusion layers too
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
