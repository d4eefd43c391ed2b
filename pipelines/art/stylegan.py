"""A class-conditional StyleGAN2, from scratch, small enough to read top to bottom.

This is the GAN twin of the project's diffusion model: same data (a few hundred microscopy images, 32-64 px on CPU,
128 px on a GPU), same image convention (float (B, 3, S, S) in [-1, 1], int64 class labels (B,)).

Generator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", the "skip" variant):

    z, label -> mapping MLP -> w            one style vector per sample (class embedding concatenated with the
                                            normalised z, as in StyleGAN2-ADA's conditional mapping)
    w -> broadcast to num_ws copies         one w per style input; style mixing swaps a suffix of them
    const 4x4 -> [ModulatedConv -> noise -> bias -> lrelu] -> ToRGB
              -> per resolution 8..size: upsample, 2 modulated convs, ToRGB; rgb = upsample(rgb) + ToRGB(x)

A modulated conv scales its weights per input channel by a style computed from w (an affine layer), then
*demodulates*: rescales each output filter to unit norm, so activations stay O(1) whatever the style (this replaces
StyleGAN1's AdaIN and removes its "droplet" artefacts). Every layer uses the equalized learning rate: weights are
drawn from N(0, 1) and scaled at runtime by 1/sqrt(fan_in), so Adam sees all parameters on the same scale.
Upsampling is bilinear interpolation and downsampling is average pooling: no custom CUDA ops (the paper's FIR
filters and fused up/down kernels), so this runs unchanged on CPU and GPU.

Discriminator: residual blocks halving the resolution down to 4x4, a minibatch-stddev feature (lets D see the lack
of diversity of a collapsed G), and projection conditioning (Miyato & Koyama 2018, "cGANs with Projection
Discriminator"): logit = psi(h) + <embed(label), h>.

Training pieces for tiny datasets: DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient
GAN Training") applies the same differentiable augmentations to real and fake images before D, so D cannot memorise
a few hundred images; R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?") penalises
D's gradient on reals; style-mixing regularisation (mixing_ws) decorrelates the styles of different layers.

Channel count per resolution: min(max_channels, channels * size // res), i.e. `channels` at full resolution,
doubling each time the resolution halves, capped at `max_channels` (most compute sits at the large resolutions).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2)  # leaky ReLU 0.2 halves the variance of N(0,1) inputs (approximately); sqrt(2) restores it


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def _normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _channels(res: int, size: int, base: int, cap: int) -> int:
    return min(cap, base * size // res)


def _check_size(size: int) -> int:
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    return int(math.log2(size))


# ---------------------------------------------------------------------------------------------- equalized layers
class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate; lr_mul < 1 slows a layer down (the mapping net uses 0.01)."""

    def __init__(self, in_f: int, out_f: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_f,), bias_init / lr_mul))
        self.w_scale, self.lr_mul = lr_mul / math.sqrt(in_f), lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.w_scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate, 'same' padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.w_scale = 1 / math.sqrt(in_ch * kernel * kernel)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.w_scale, self.bias, padding=self.weight.shape[-1] // 2)


# ---------------------------------------------------------------------------------------------- generator blocks
class ModulatedConv2d(nn.Module):
    """Conv whose weights are modulated per sample by a style from w, then (optionally) demodulated.

    fused=True runs the whole batch as one grouped conv (B groups, one per sample's own weights), which is what
    StyleGAN2 does for speed; fused=False modulates activations instead and gives the same result (useful as a check).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.w_scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # bias 1: styles start near 1 = unmodulated conv
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def modulated_weight(self, w: Tensor) -> Tensor:
        """Per-sample weights (B, out, in, k, k); each output filter has unit L2 norm when demodulating."""
        styles = self.affine(w)
        weight = self.weight[None] * self.w_scale * styles[:, None, :, None, None]
        if self.demodulate:
            weight = weight * (weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        return weight

    def forward(self, x: Tensor, w: Tensor, fused: bool = True) -> Tensor:
        if self.up:  # bilinear instead of StyleGAN2's transposed conv + FIR blur: no custom ops, no checkerboards
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        b, c, h, wd = x.shape
        if not fused:
            styles = self.affine(w)
            x = F.conv2d(x * styles[:, :, None, None], self.weight * self.w_scale, padding=self.padding)
            if self.demodulate:
                d = (self.weight[None] * self.w_scale * styles[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8
                x = x * d.rsqrt()[:, :, None, None]
            return x
        weight = self.modulated_weight(w)  # (B, out, in, k, k) -> one grouped conv over (1, B*in, H, W)
        out = F.conv2d(
            x.reshape(1, b * c, h, wd), weight.reshape(-1, c, *weight.shape[3:]), padding=self.padding, groups=b
        )
        return out.reshape(b, -1, *out.shape[2:])


class StyleLayer(nn.Module):
    """Modulated 3x3 conv -> per-pixel noise (learned per-channel strength) -> bias -> leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, res: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(1, out_ch, 1, 1))  # 0: noise is off until G finds it useful
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.register_buffer("noise_const", torch.randn(1, 1, res, res))  # saved with the model: reproducible serving

    def forward(self, x: Tensor, w: Tensor, noise: str = "random") -> Tensor:
        x = self.conv(x, w)
        if noise == "random":
            x = x + self.noise_strength * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        elif noise == "const":
            x = x + self.noise_strength * self.noise_const
        elif noise != "none":
            raise ValueError(f"noise must be 'random', 'const' or 'none', got {noise!r}")
        return _lrelu(x + self.bias)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to 3 channels, no demodulation (it is an output projection, not a feature layer)."""

    def __init__(self, in_ch: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias


class Generator(nn.Module):
    """Conditional StyleGAN2 generator, "skip" architecture. num_ws = 2 * (log2(size) - 1), as in StyleGAN2:
    the 4x4 conv uses ws[0], and each ToRGB shares its w with the first conv of the next resolution."""

    def __init__(
        self,
        size: int = 64,
        n_classes: int = 2,
        z_dim: int = 128,  # 128 (not 512): a few hundred images do not need a bigger latent
        w_dim: int = 128,  # same as z_dim; it also sets the class embedding width
        mapping_layers: int = 4,  # StyleGAN2 uses 8; 4 is what StyleGAN2-ADA found enough for small datasets
        channels: int = 128,  # channels at full resolution
        max_channels: int = 256,  # cap at low resolutions; 256 keeps a 64 px G around a few M parameters
        conditional: bool = True,  # false: every label is read as class 0, so the class steers nothing (ablation)
    ):
        super().__init__()
        log2 = _check_size(size)
        self.size, self.z_dim, self.w_dim, self.n_classes = size, z_dim, w_dim, n_classes
        self.conditional = conditional
        self.w_avg_beta = 0.995  # EMA decay of w_avg (StyleGAN2's value)
        self.embed = nn.Embedding(n_classes, w_dim)
        layers, in_f = [], z_dim + w_dim
        for _ in range(mapping_layers):
            layers.append(EqualLinear(in_f, w_dim, lr_mul=0.01))  # lr_mul 0.01: a slow mapping net is more stable
            in_f = w_dim
        self.mapping_net = nn.ModuleList(layers)
        # w_avg: one running mean over all training ws (all classes together). truncation pulls w towards it,
        # so strong truncation also pulls towards the "average class"; truncation=0 gives w_avg for every input.
        self.register_buffer("w_avg", torch.zeros(w_dim))

        ch = [_channels(2**i, size, channels, max_channels) for i in range(2, log2 + 1)]
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.convs = nn.ModuleList([StyleLayer(ch[0], ch[0], w_dim, 4)])
        self.torgbs = nn.ModuleList([ToRGB(ch[0], w_dim)])
        for i in range(1, len(ch)):
            res = 2 ** (i + 2)
            self.convs.append(StyleLayer(ch[i - 1], ch[i], w_dim, res, up=True))
            self.convs.append(StyleLayer(ch[i], ch[i], w_dim, res))
            self.torgbs.append(ToRGB(ch[i], w_dim))
        self.num_ws = len(self.convs) + 1  # convs use ws[0..n-1]; the last ToRGB uses ws[n]

    def mapping(self, z: Tensor, labels: Tensor, truncation: float = 1.0) -> Tensor:
        labels = condition(labels, self.conditional)
        x = torch.cat([_normalize_2nd_moment(z), _normalize_2nd_moment(self.embed(labels))], dim=1)
        for layer in self.mapping_net:
            x = _lrelu(layer(x))
        if self.training:
            self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            x = self.w_avg.lerp(x, truncation)  # w_avg + truncation * (w - w_avg)
        return x

    def synthesis(self, ws: Tensor, noise: str = "random") -> Tensor:
        """ws (B, num_ws, w_dim) -> images (B, 3, S, S). Linear output, no tanh (as StyleGAN2): about [-1, 1] once
        trained against reals in [-1, 1], a few units wide at init; clamp for display."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise)
        img = self.torgbs[0](x, ws[:, 1])
        for i, torgb in enumerate(self.torgbs[1:]):
            x = self.convs[2 * i + 1](x, ws[:, 2 * i + 1], noise)
            x = self.convs[2 * i + 2](x, ws[:, 2 * i + 2], noise)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + torgb(x, ws[:, 2 * i + 3])
        return img

    def broadcast(self, w: Tensor) -> Tensor:
        return w[:, None].expand(-1, self.num_ws, -1)

    def forward(self, z: Tensor, labels: Tensor, truncation: float = 1.0, noise: str = "random") -> Tensor:
        return self.synthesis(self.broadcast(self.mapping(z, labels, truncation)), noise)

    def style_mix(
        self, z_a: Tensor, z_b: Tensor, labels: Tensor, crossover: int, truncation: float = 1.0, noise: str = "const"
    ) -> Tensor:
        """Coarse styles (ws[:crossover]) from z_a, fine styles (ws[crossover:]) from z_b."""
        ws = self.broadcast(self.mapping(z_a, labels, truncation)).clone()
        ws[:, crossover:] = self.mapping(z_b, labels, truncation)[:, None]
        return self.synthesis(ws, noise)


def mixing_ws(generator: Generator, z: Tensor, labels: Tensor, prob: float = 0.9, truncation: float = 1.0) -> Tensor:
    """Training ws with style-mixing regularisation: with probability prob (StyleGAN2's 0.9), a second random z
    (same labels) supplies ws from a random crossover in [1, num_ws) on, so layers cannot rely on sharing one w."""
    ws = generator.broadcast(generator.mapping(z, labels, truncation))
    if prob > 0 and random.random() < prob:
        cut = random.randint(1, generator.num_ws - 1)
        w2 = generator.mapping(torch.randn_like(z), labels, truncation)
        ws = torch.cat([ws[:, :cut], generator.broadcast(w2)[:, cut:]], dim=1)
    return ws


def condition(labels: Tensor, conditional: bool) -> Tensor:
    """The labels a network reads: as given, or (unconditional) all class 0, whose embedding is then a constant
    that carries no class (the weights keep their shape, so one loader serves both kinds)."""
    return labels if conditional else torch.zeros_like(labels)


# ---------------------------------------------------------------------------------------------- discriminator
class DBlock(nn.Module):
    """Residual block: two 3x3 convs and a 2x downsample, plus a 1x1 skip; sum scaled by 1/sqrt(2) keeps variance."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0, self.conv1 = EqualConv2d(in_ch, in_ch, 3), EqualConv2d(in_ch, out_ch, 3)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.avg_pool2d(_lrelu(self.conv0(x)), 2)  # average pooling: a box filter in place of StyleGAN2's FIR
        y = _lrelu(self.conv1(y))
        return (self.skip(F.avg_pool2d(x, 2)) + y) / math.sqrt(2)


def _minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel: the std of features across a group of samples, averaged (StyleGAN's diversity cue)."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:  # groups must tile the batch; fall back to the largest divisor <= group_size
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (b/g,)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    def __init__(
        self,
        size: int = 64,
        n_classes: int = 2,
        channels: int = 64,  # channels at full resolution; half of G's: D overfits first on small data
        max_channels: int = 256,  # cap at low resolutions, matching G
        conditional: bool = True,  # false: the projection sees class 0 only, a plain unconditional D (ablation)
    ):
        super().__init__()
        log2 = _check_size(size)
        self.size, self.n_classes, self.conditional = size, n_classes, conditional
        ch = {2**i: _channels(2**i, size, channels, max_channels) for i in range(2, log2 + 1)}
        self.from_rgb = EqualConv2d(3, ch[size], 1)
        self.blocks = nn.Sequential(*[DBlock(ch[2**i], ch[2 ** (i - 1)]) for i in range(log2, 2, -1)])
        self.conv = EqualConv2d(ch[4] + 1, ch[4], 3)  # +1: the minibatch-stddev channel
        self.fc = EqualLinear(ch[4] * 16, ch[4])
        self.out = EqualLinear(ch[4], 1)
        self.embed = nn.Embedding(n_classes, ch[4])  # projection: one vector per class, dotted with the features

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        labels = condition(labels, self.conditional)
        x = self.blocks(_lrelu(self.from_rgb(images)))
        x = _lrelu(self.conv(_minibatch_stddev(x)))
        h = _lrelu(self.fc(x.flatten(1)))
        # 1/sqrt(dim): keeps the projection term O(1) at init, like StyleGAN2-ADA's cmap normalisation
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1) / math.sqrt(h.shape[1])


# ---------------------------------------------------------------------------------------------- DiffAugment
def _color(x: Tensor) -> Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast


def _translation(x: Tensor, ratio: float = 0.125) -> Tensor:  # shift by up to 1/8 of the image, zero-filled
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, size=[b, 1, 1], device=x.device)
    ty = torch.randint(-sw, sw + 1, size=[b, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(*(torch.arange(n, device=x.device) for n in (b, h, w)), indexing="ij")
    gx, gy = torch.clamp(gx + tx + 1, 0, h + 1), torch.clamp(gy + ty + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])  # indices 0 and h+1 hit the zero padding
    return x_pad.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: Tensor, ratio: float = 0.5) -> Tensor:  # zero a random square of half the image side
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=[b, 1, 1], device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=[b, 1, 1], device=x.device)
    gb, gx, gy = torch.meshgrid(*(torch.arange(n, device=x.device) for n in (b, ch, cw)), indexing="ij")
    gx, gy = torch.clamp(gx + ox - ch // 2, 0, h - 1), torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, device=x.device, dtype=x.dtype)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: Tensor, policy: str = "color,translation,cutout") -> Tensor:
    """DiffAugment: random, differentiable augmentations. Call it on both reals and fakes before D (with the same
    policy; each call draws fresh random parameters), so G's gradient flows through the augmentation."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        if name not in _AUGMENTS:
            raise ValueError(f"unknown DiffAugment op {name!r}; choose from {sorted(_AUGMENTS)}")
        x = _AUGMENTS[name](x)
    return x


# ---------------------------------------------------------------------------------------------- losses
def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating logistic loss: -log sigmoid(D(G(z))), strong gradients when D rejects the fakes."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """Mean over the batch of ||grad_x D(x)||^2 on reals (real_images must require grad). The caller scales it by
    gamma / 2; create_graph=True so the penalty itself can be backpropagated into D."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


@torch.no_grad()
def sample(generator: Generator, labels, seeds, truncation: float = 1.0, device="cpu") -> Tensor:
    """Served images (N, 3, S, S) clamped to [-1, 1]: image i from z drawn with seeds[i] alone and the fixed
    ("const") noise buffers, so a seed gives the same image in any batch."""
    z = torch.stack([torch.randn(generator.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    y = torch.as_tensor(labels, dtype=torch.long)
    return generator(z.to(device), y.to(device), truncation=truncation, noise="const").clamp(-1, 1).cpu()
