"""Sample quality for the art generators: FID, KID, precision/recall, memorisation and recognition.

Every number is a distance between sets of FEATURES, so it is only as meaningful as the feature network:

- FID (Frechet distance): fit a Gaussian to the real and to the generated features, report
  |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^1/2). 0 = same mean and covariance; biased upwards at small N.
- KID (kernel distance): unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets
  (kid_std: its spread over subsets). Unbiased, so it is the better number at our few hundred images.
- precision / recall (Kynkaanniemi et al. 2019): share of generated samples inside the real manifold
  (fidelity) and share of real samples inside the generated manifold (diversity); a manifold is the union of
  k-nearest-neighbour balls. A mode-collapsed generator has high precision and low recall.
- memorisation: for each generated sample, distance to the nearest TRAINING feature over distance to the
  nearest HELD-OUT real feature. Copies of training images give ratio ~0; an honest generator ~1 (a bit below
  when the training set is much larger than the held-out set, since nearest neighbours get closer with N).
- recognition: share of generated images whose requested class the encoder's classifier recognises.
- reference points: the floor (real train vs real held-out: what a perfect generator scores at this sample
  size) and the ceiling (clamped Gaussian noise vs held-out). Read a generator's score between these two.

Pretrained Inception weights cannot be downloaded here, so the default feature space is a `FeatureEncoder`
trained on the training images only (modality cross-entropy + SimCLR-lite contrastive task, so the features
describe texture and morphology, not only the 2 classes). Its FIDs are NOT comparable with published
Inception FIDs (different features, dimension, scale and sample size): compare runs only within one encoder
(same seed, same training images). `load_inception` accepts a local Inception-v3 TorchScript file instead.

FID and KID are torchmetrics' own. Their `feature=` argument takes any nn.Module: torchmetrics then uses the
module's `num_features` attribute (no dummy forward at construction), passes inputs through untouched
(`normalize` is ignored for custom modules) and never imports torch-fidelity. `fid_kid` takes precomputed
features, so it hands torchmetrics an identity module (`Precomputed`); features are float64 throughout,
which torchmetrics keeps for the covariance matrix square root.
"""

from __future__ import annotations

import math
import os
import time
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


def _as_unit_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] (what torchmetrics' docs use) or float [-1, 1] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


def _block(c_in: int, c_out: int) -> nn.Sequential:
    groups = math.gcd(8, c_out)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
        nn.GroupNorm(groups, c_out),
        nn.SiLU(),
    )


class FeatureEncoder(nn.Module):
    """A small CNN trained on the TRAINING images only (like a scaler: fitted on train, applied everywhere).

    Blocks of (3x3 conv stride 2, GroupNorm, SiLU): 3 blocks up to 32 px, 4 above; global average pool; a linear
    to `dim`. GroupNorm, not BatchNorm: a sample's features never depend on the other images in its batch.
    """

    def __init__(self, size: int, n_classes: int = 2, width: int = 32, dim: int = 128):
        super().__init__()
        self.size, self.n_classes, self.num_features = size, n_classes, dim
        channels = [width, 2 * width, 4 * width] + ([4 * width] if size > 32 else [])  # 3 blocks, 4 above 32 px
        self.body = nn.Sequential(*[_block(c_in, c_out) for c_in, c_out in zip([3] + channels[:-1], channels)])
        self.embed = nn.Linear(channels[-1], dim)
        self.head = nn.Linear(dim, n_classes)  # modality classifier
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 64))  # contrastive projection

    def forward(self, images: Tensor) -> Tensor:
        x = _as_unit_range(images).contiguous(memory_format=torch.channels_last)  # ~10 % faster on CPU
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.embed(self.body(x).mean(dim=(2, 3)))

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self(images))


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random 90-degree rotation, flip, crop (60-100 % of the side) and MILD colour jitter, one affine per image.

    Microscopy has no 'up', so rotations and flips are free invariances. Colour jitter stays mild (+-10 %): colour
    is what separates stains and modalities, and a generator with the wrong colours must still score badly.
    """
    n = x.shape[0]
    angle = torch.randint(0, 4, (n,), generator=g).float() * (math.pi / 2)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    scale = 0.6 + 0.4 * torch.rand(n, generator=g)
    shift = (1 - scale)[:, None] * (2 * torch.rand(n, 2, generator=g) - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    gain = 1 + 0.1 * (2 * torch.rand(n, 3, 1, 1, generator=g) - 1)
    bias = 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    return (x * gain.to(x) + bias.to(x)).clamp(-1, 1)


def _nt_xent(z: Tensor, temperature: float = 0.2) -> Tensor:
    """SimCLR loss: rows i and i + B of z (L2-normalised) are two views of one image, all other rows negatives."""
    b = z.shape[0] // 2
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, target)


def train_encoder(
    images: Tensor,
    labels: Tensor,
    size: int,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    device: str | torch.device = "cpu",
) -> tuple[FeatureEncoder, dict]:
    """Fit a FeatureEncoder on training images: modality cross-entropy + SimCLR-lite (two augmented views).

    Deterministic given seed (weights, shuffling and augmentations all come from it; the global RNG is untouched).
    """
    t0 = time.perf_counter()
    n_classes = max(2, int(labels.max()) + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureEncoder(size, n_classes=n_classes).to(device)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    images, labels = _as_unit_range(images), labels.long()
    model.train()
    ce = nce = torch.tensor(float("nan"))
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(batch_size):
            if len(idx) < 2:  # a contrastive batch needs a negative
                continue
            x = images[idx]
            views = torch.cat([_augment(x, g), _augment(x, g)]).to(device)
            h = model(views)  # a batch of B images is 2B views
            ce = F.cross_entropy(model.head(h), labels[idx].repeat(2).to(device))
            nce = _nt_xent(F.normalize(model.proj(h), dim=1))
            opt.zero_grad(set_to_none=True)
            (ce + nce).backward()
            opt.step()
    model.eval()
    accuracy = recognition(model, images, labels)
    info = {"train_accuracy": accuracy, "epochs": epochs, "seconds": time.perf_counter() - t0, "n_images": len(images)}
    info |= {"final_ce": ce.item(), "final_contrastive": nce.item()}
    return model, info


class InceptionFeatures(nn.Module):
    """Wraps a TorchScript Inception-v3 so it takes [-1, 1] images like FeatureEncoder and exposes num_features."""

    def __init__(self, net: torch.jit.ScriptModule, resize: int | None = None):
        super().__init__()
        self.net, self.resize = net.eval(), resize
        names = [a.name for a in net.forward.schema.arguments] if hasattr(net.forward, "schema") else []
        self.kwargs = {"return_features": True} if "return_features" in names else {}  # StyleGAN2-ADA's detector
        self.requires_grad_(False)
        nf = getattr(net, "num_features", None)
        if nf is None:
            with torch.no_grad():
                param = next(net.parameters(), None)
                nf = self(torch.zeros(1, 3, 299, 299, device=param.device if param is not None else "cpu")).shape[-1]
        self.num_features = int(nf)

    def forward(self, images: Tensor) -> Tensor:
        x = (_as_unit_range(images) + 1) * 127.5  # [-1, 1] -> [0, 255], then uint8 as the TF-ported nets expect
        if self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.net(x.round().clamp(0, 255).to(torch.uint8), **self.kwargs).flatten(1)


def load_inception(path: str, resize: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A local TorchScript Inception-v3 feature net (e.g. StyleGAN2-ADA's `inception-2015-12-05.pt`: uint8
    (N, 3, H, W) -> 2048-d pool features, resizing internally), wrapped to take [-1, 1] images.

    SECURITY: torch.jit.load runs the code stored in the file. Load only files you trust.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Inception TorchScript file not found: {path}")
    return InceptionFeatures(torch.jit.load(path, map_location=device), resize=resize)


@torch.no_grad()
def extract_features(feature_net: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """(N, D) float64 features on the CPU, in eval mode and without gradients (the net's mode is restored)."""
    param = next(feature_net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = feature_net.training
    feature_net.eval()
    try:
        out = [feature_net(x.to(device)).double().cpu() for x in images.split(batch_size)]
    finally:
        feature_net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)


class Precomputed(nn.Module):
    """Identity 'feature extractor' for torchmetrics: the inputs already ARE features (N, D)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features.double()


def fid_kid(real: Tensor, fake: Tensor, subset_size: int | None = None, seed: int = 0, subsets: int = 100) -> dict:
    """torchmetrics FID and KID between two FEATURE sets (N, D).

    subset_size (KID) defaults to 1000 and is clipped to the smaller set (torchmetrics refuses a larger one);
    when it equals both set sizes every subset is the full set, so kid_std is 0. torchmetrics draws subsets from
    the global RNG: it is seeded inside a forked RNG, leaving the caller's RNG untouched. KID is unbiased for
    independent sets (same distribution: ~0 +- kid_std, can be < 0); a set against ITSELF comes out slightly negative.
    """
    real, fake = real.double().flatten(1), fake.double().flatten(1)
    if len(real) < 2 or len(fake) < 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"need >= 2 features per set of one dimension, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    subset_size = max(2, min(subset_size or 1000, len(real), len(fake)))
    fid = FrechetInceptionDistance(feature=Precomputed(real.shape[1]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=subsets, subset_size=subset_size)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
        "kid_subset_size": subset_size,
    }


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> dict:
    """Improved precision/recall (Kynkaanniemi et al. 2019) on features: each set's manifold is the union of balls
    reaching each point's k-th nearest neighbour in its own set."""
    real, fake = real.double().flatten(1), fake.double().flatten(1)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} samples per set, got {len(real)} real and {len(fake)} fake")
    r_real = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # k + 1: the 0 distance to itself
    r_fake = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    d = torch.cdist(fake, real)  # (n_fake, n_real)
    precision = (d <= r_real[None, :]).any(dim=1).double().mean()
    recall = (d <= r_fake[:, None]).any(dim=0).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


def memorisation(fake: Tensor, train: Tensor, heldout: Tensor) -> dict:
    """Nearest-training over nearest-held-out distance per generated sample (features). ratio << 1: copies.

    Caveat: nearest neighbours get closer as a set grows, so with |train| >> |heldout| an honest generator sits
    somewhat below 1; judge a run by the low tail (ratio_p05, share_below_0.5) and the `closest` pairs (look at
    those images).
    """
    fake, train, heldout = fake.double().flatten(1), train.double().flatten(1), heldout.double().flatten(1)
    d_train, train_index = torch.cdist(fake, train).min(dim=1)
    d_held = torch.cdist(fake, heldout).min(dim=1).values
    ratio = d_train / d_held.clamp_min(1e-12)
    order = torch.argsort(d_train)[:8]
    closest = [(int(i), int(train_index[i]), float(d_train[i])) for i in order]
    return {
        "ratio_median": float(ratio.median()),
        "ratio_p05": float(torch.quantile(ratio, 0.05)),
        "share_below_0.5": float((ratio < 0.5).double().mean()),
        "closest": closest,
        "ratios": ratio.numpy(),
        "d_train": d_train.numpy(),
        "d_held": d_held.numpy(),
    }


@torch.no_grad()
def recognition(feature_net: FeatureEncoder, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Share of images whose requested class (labels) the encoder's modality classifier predicts."""
    device = next(feature_net.parameters()).device
    was_training = feature_net.training
    feature_net.eval()
    try:
        pred = torch.cat([feature_net.logits(x.to(device)).argmax(dim=1).cpu() for x in images.split(batch_size)])
    finally:
        feature_net.train(was_training)
    return float((pred == labels.cpu().long()).double().mean())


def reference_points(feature_net: nn.Module, train_images: Tensor, heldout_images: Tensor, seed: int = 0) -> dict:
    """Floor: real train vs real held-out (a perfect generator at this sample size). Ceiling: clamped N(0, 1)
    noise images (as many as the training images) vs held-out."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(train_images), *heldout_images.shape[1:]), generator=g).clamp(-1, 1)
    f_train, f_held, f_noise = (extract_features(feature_net, x) for x in (train_images, heldout_images, noise))
    floor, ceiling = fid_kid(f_train, f_held, seed=seed), fid_kid(f_noise, f_held, seed=seed)
    return {
        "floor/fid": floor["fid"],
        "floor/kid": floor["kid"],
        "ceiling/fid": ceiling["fid"],
        "ceiling/kid": ceiling["kid"],
    }
