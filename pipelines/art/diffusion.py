"""A class-conditional diffusion model of microscopy tiles: diffusers' UNet2DModel and schedulers.

Training (Ho et al. 2020, DDPM): pick a timestep t, noise a real tile x0 into x_t = sqrt(a_t) x0 +
sqrt(1 - a_t) eps, and teach the UNet to predict eps from (x_t, t, class). The class enters through
diffusers' class embedding, added to the timestep embedding; one extra "null" class (index n_classes)
is trained on a random `cond_drop` share of the steps, so the same network also predicts without the
class: classifier-free guidance (Ho & Salimans 2022) mixes the two predictions at sampling time,
eps = eps_null + g (eps_class - eps_null): g = 1 is plain conditional sampling, g > 1 pushes the samples
towards what is typical of the class (less variety, more recognisable).

Sampling (Song et al. 2021, DDIM): the same trained network, deterministic (eta = 0) updates on a
subset of `steps` timesteps: 20-50 steps instead of 1000. Each image starts from its own seeded noise,
so the same request gives the same image; the same seed alone or inside a larger batch agrees to float
rounding (about 1e-6, at most one grey level after quantisation: batched kernels sum in another order).

SDEdit (Meng et al. 2022): a user's sketch is noised to an intermediate timestep (the `strength`: 0
keeps the sketch, 1 ignores it) and denoised from there: the layout of the drawing survives, the
texture becomes that of the requested modality.

Unconditional (`conditional=False`, the conditioning ablation): every training step sees the null class and
every sampling call replaces the label by it, in one pass (guidance would mix the null prediction with
itself). The flag is an attribute of the UNet (`build_unet`), so training, validation, serving and SDEdit
all honour it without each call site passing it along.

This is the model family of Stable Diffusion without its pretrained parts (VAE latent space, CLIP text
encoder): those weights cannot be downloaded here, and at 64 px pixel space is cheap enough.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def build_unet(
    size: int, n_classes: int, channels: Sequence[int], layers_per_block: int, attention: bool, conditional: bool = True
):
    """A UNet2DModel for (3, size, size) images with a class embedding of n_classes + 1 (the null class).

    `conditional` is kept as a plain attribute (not diffusers config: it changes no weight), copied by deepcopy
    into the EMA UNet and rebuilt by the pyfunc from model.json's architecture.
    """
    from diffusers import UNet2DModel

    depth = len(channels)
    if size % 2 ** (depth - 1):
        raise ValueError(
            f"a {size} px image cannot be halved {depth - 1} times (diffusion.channels has {depth} levels)"
        )
    down = ["DownBlock2D"] * depth
    up = ["UpBlock2D"] * depth
    if attention:  # at the lowest resolution only: attention is quadratic in pixels
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    unet = UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        num_class_embeds=n_classes + 1,
        norm_num_groups=min(8, min(channels)),  # GroupNorm groups must divide every width
    )
    unet.conditional = conditional
    return unet


def is_conditional(unet) -> bool:
    return getattr(unet, "conditional", True)  # a UNet built before the switch is conditional


def noise_scheduler(timesteps: int, schedule: str):
    """The training (DDPM) noise schedule; DDIM sampling reuses its configuration."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule=schedule, prediction_type="epsilon")


def training_loss(unet, scheduler, images: torch.Tensor, labels: torch.Tensor, n_classes: int, cond_drop: float):
    """The DDPM objective: MSE between the true and the predicted noise, the class dropped at `cond_drop`."""
    noise = torch.randn_like(images)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (images.shape[0],), device=images.device)
    noisy = scheduler.add_noise(images, noise, t)
    drop = torch.rand(labels.shape, device=labels.device) < (cond_drop if is_conditional(unet) else 1.0)
    labels = torch.where(drop, torch.full_like(labels, n_classes), labels)
    predicted = unet(noisy, t, class_labels=labels).sample
    return torch.nn.functional.mse_loss(predicted, noise)


def seeded_noise(seeds: Sequence[int], size: int, device="cpu") -> torch.Tensor:
    """One (3, size, size) standard normal per seed, each from its own generator: batch-independent."""
    return torch.stack([torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(
        device
    )


def _ddim(scheduler_config, steps: int):
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(scheduler_config, clip_sample=True, set_alpha_to_one=False)
    ddim.set_timesteps(steps)
    return ddim


def _guided_eps(unet, x, t, labels, n_classes: int, guidance: float) -> torch.Tensor:
    if not is_conditional(unet):  # the null class is all it was trained on
        labels, guidance = torch.full_like(labels, n_classes), 1.0
    if guidance == 1.0:  # plain conditional: one pass
        return unet(x, t, class_labels=labels).sample
    null = torch.full_like(labels, n_classes)
    both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample
    conditional, unconditional = both.chunk(2)
    return unconditional + guidance * (conditional - unconditional)


@torch.no_grad()
def denoise(unet, scheduler_config, x, labels, n_classes: int, steps: int, guidance: float, start: int = 0):
    """DDIM from x at the `start`-th of `steps` timesteps down to an image in [-1, 1]."""
    ddim = _ddim(scheduler_config, steps)
    for t in ddim.timesteps[start:]:
        eps = _guided_eps(unet, x, t, labels, n_classes, guidance)
        x = ddim.step(eps, t, x, eta=0.0).prev_sample
    return x.clamp(-1, 1)


@torch.no_grad()
def sample(unet, scheduler_config, labels, seeds, n_classes: int, steps: int, guidance: float, batch: int = 64):
    """Images (N, 3, S, S) in [-1, 1] of classes `labels`, image i from seeds[i]."""
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    out = []
    for k in range(0, len(seeds), batch):
        x = seeded_noise(seeds[k : k + batch], size, device)
        y = torch.as_tensor(labels[k : k + batch], dtype=torch.long, device=device)
        out.append(denoise(unet, scheduler_config, x, y, n_classes, steps, guidance).cpu())
    return torch.cat(out)


@torch.no_grad()
def sdedit(unet, scheduler_config, sketch, labels, seeds, n_classes: int, steps: int, guidance: float, strength: float):
    """SDEdit: `sketch` (N, 3, S, S) in [-1, 1] noised to `strength` of the way, then denoised into class `labels`."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength {strength} is not in (0, 1]")
    device = next(unet.parameters()).device
    ddim = _ddim(scheduler_config, steps)
    start = min(steps - 1, int(round(steps * (1 - strength))))
    t_start = ddim.timesteps[start]
    noise = seeded_noise(seeds, sketch.shape[-1], device)
    x = ddim.add_noise(sketch.to(device), noise, torch.full((len(seeds),), int(t_start), device=device))
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    return denoise(unet, scheduler_config, x, y, n_classes, steps, guidance, start=start).cpu()
