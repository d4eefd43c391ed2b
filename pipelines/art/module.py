"""The LightningModule of the art project: the diffusion UNet and the StyleGAN-style GAN trained side by side.

One version of the model holds both generators (the studio serves both: diffusion for sampling and
sketches, the GAN for style mixing), so one module trains both, with Lightning's manual optimisation:
three optimisers (UNet; generator; discriminator) stepped in turn on every batch of real tiles.

- diffusion: the DDPM noise-prediction loss (diffusion.training_loss), logged as train/loss; an EMA
  copy of the UNet is what is sampled from (EMA weights sample visibly cleaner at small data);
- GAN: non-saturating logistic losses, DiffAugment on real and fake alike (what the discriminator sees),
  lazy R1 on the reals every `r1_every` steps, style-mixing regularisation; train/d_loss, train/g_loss.

Model selection follows sample quality, not a loss: at every validation epoch the EMA UNet draws
`val_samples` images per class with DDIM, and val/fid is their FID against the validation tiles in the
feature space of the encoder prepare trained on the training tiles (quality.py). val/gan_fid is the
GAN's, logged beside it, with val/recognition and val/gan_recognition (the share of samples the encoder's
modality head assigns to the requested class: what conditioning buys, read by the ablation study). A grid
of samples per class is logged to MLflow at every validation epoch.
"""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from pipelines.art import diffusion, stylegan


class ArtNets(nn.Module):
    """The networks a version is made of (what export saves and the pyfunc loads)."""

    def __init__(self, size: int, n_classes: int, diffusion_cfg: dict, gan_cfg: dict) -> None:
        super().__init__()
        self.size, self.n_classes = size, n_classes
        self.unet = diffusion.build_unet(size, n_classes, **diffusion_cfg)
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.generator = stylegan.Generator(size=size, n_classes=n_classes, **gan_cfg["generator"])
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.discriminator = stylegan.Discriminator(size=size, n_classes=n_classes, **gan_cfg["discriminator"])


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, decay: float, step: int) -> None:
    """target <- decay * target + (1 - decay) * source, with the usual warm-up min(decay, (1 + t) / (10 + t)):
    without it the average still holds the random initial weights after a short run (0.995^300 = 22 %)."""
    decay = min(decay, (1 + step) / (10 + step))
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s.detach(), 1 - decay)
    for t, s in zip(target.buffers(), source.buffers(), strict=True):
        t.copy_(s)


class ArtModule(pl.LightningModule):
    def __init__(self, nets: ArtNets, hparams: dict, encoder: nn.Module, class_shares: list[float]) -> None:
        super().__init__()
        self.automatic_optimization = False  # three optimisers, stepped by hand
        self.save_hyperparameters(hparams)  # learning rates, losses, sampling settings and the architecture
        self.nets = nets
        self.scheduler = diffusion.noise_scheduler(hparams["timesteps"], hparams["schedule"])
        # the feature encoder is fixed (fitted by prepare): a plain attribute keeps it out of the checkpoint
        self.quality = {"encoder": encoder.eval().requires_grad_(False)}
        self.class_shares = class_shares  # of the validation tiles: the samples follow the same class mix
        self.val_features: list[torch.Tensor] = []

    # ---- training -------------------------------------------------------------------------------

    def configure_optimizers(self):
        h = self.hparams
        return [
            torch.optim.AdamW(self.nets.unet.parameters(), lr=h["lr"], weight_decay=0.0),
            torch.optim.Adam(self.nets.generator.parameters(), lr=h["gan_lr"], betas=(0.0, 0.99)),
            torch.optim.Adam(self.nets.discriminator.parameters(), lr=h["gan_lr"], betas=(0.0, 0.99)),
        ]

    def training_step(self, batch, batch_idx):
        images, labels = batch
        opt_unet, opt_g, opt_d = self.optimizers()
        h, nets = self.hparams, self.nets

        loss = diffusion.training_loss(nets.unet, self.scheduler, images, labels, nets.n_classes, h["cond_drop"])
        opt_unet.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_unet.step()
        ema_update(nets.unet_ema, nets.unet, h["ema"], self.global_step)

        z = torch.randn(images.shape[0], nets.generator.z_dim, device=images.device)
        with torch.no_grad():
            fake = nets.generator.synthesis(stylegan.mixing_ws(nets.generator, z, labels, h["mixing"]))
        augment = h["augment"]
        real_logits = nets.discriminator(stylegan.diff_augment(images, augment), labels)
        fake_logits = nets.discriminator(stylegan.diff_augment(fake, augment), labels)
        d_loss = stylegan.discriminator_loss(real_logits, fake_logits)
        if h["r1_gamma"] > 0 and batch_idx % h["r1_every"] == 0:  # lazy R1, scaled by its interval
            real = images.detach().requires_grad_(True)
            r1 = stylegan.r1_penalty(nets.discriminator(stylegan.diff_augment(real, augment), labels), real)
            d_loss = d_loss + h["r1_gamma"] / 2 * r1 * h["r1_every"]
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        z = torch.randn(images.shape[0], nets.generator.z_dim, device=images.device)
        fake = nets.generator.synthesis(stylegan.mixing_ws(nets.generator, z, labels, h["mixing"]))
        g_loss = stylegan.generator_loss(nets.discriminator(stylegan.diff_augment(fake, augment), labels))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        ema_update(nets.generator_ema, nets.generator, h["ema"], self.global_step)

        n = images.shape[0]
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/d_loss", d_loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/g_loss", g_loss, on_step=False, on_epoch=True, batch_size=n)

    # ---- validation: sample quality ---------------------------------------------------------------

    def validation_step(self, batch, batch_idx):
        from pipelines.art.quality import extract_features

        images, labels = batch
        self.val_features.append(extract_features(self.encoder(), images))
        loss = diffusion.training_loss(
            self.nets.unet_ema, self.scheduler, images, labels, self.nets.n_classes, self.hparams["cond_drop"]
        )
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=images.shape[0])

    def encoder(self) -> nn.Module:
        return self.quality["encoder"].to(self.device)

    def sample_labels(self) -> np.ndarray:
        """val_samples per class on average, in the validation tiles' class mix (at least one of each)."""
        total = self.hparams["val_samples"] * self.nets.n_classes
        counts = np.maximum(1, np.round(np.asarray(self.class_shares) * total)).astype(int)
        return np.repeat(np.arange(self.nets.n_classes), counts)

    def on_validation_epoch_end(self) -> None:
        from pipelines.art.quality import extract_features, fid_kid, recognition

        real = torch.cat(self.val_features)
        self.val_features = []
        labels = self.sample_labels()
        seeds = list(range(len(labels)))  # the same noise every epoch: the curve compares checkpoints, not draws
        h = self.hparams
        images = diffusion.sample(
            self.nets.unet_ema,
            self.scheduler.config,
            labels,
            seeds,
            self.nets.n_classes,
            h["val_steps"],
            h["guidance"],
        )
        gan_images = stylegan.sample(self.nets.generator_ema, labels, seeds, h["truncation"], self.device)
        scores = fid_kid(real, extract_features(self.encoder(), images.to(self.device)))
        gan_scores = fid_kid(real, extract_features(self.encoder(), gan_images.to(self.device)))
        self.log("val/fid", float(scores["fid"]))
        self.log("val/kid", float(scores["kid"]))
        self.log("val/gan_fid", float(gan_scores["fid"]))
        requested = torch.as_tensor(labels)
        self.log("val/recognition", recognition(self.encoder(), images, requested))
        self.log("val/gan_recognition", recognition(self.encoder(), gan_images, requested))
        self.log_grid(images, gan_images, labels)

    def log_grid(self, images, gan_images, labels) -> None:
        """A grid per model (a row per class) as an MLflow artifact of this epoch (skipped without a logger)."""
        logger = self.logger
        if logger is None or not hasattr(logger, "experiment") or self.trainer.sanity_checking:
            return
        from pipelines.art.pictures import grid

        for name, batch in (("diffusion", images), ("gan", gan_images)):
            picture = grid(batch, labels, self.nets.n_classes, per_class=8)
            logger.experiment.log_image(logger.run_id, picture, f"samples/{name}/epoch_{self.current_epoch:03d}.png")
